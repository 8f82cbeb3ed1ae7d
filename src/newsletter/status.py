"""What ``newsletter status`` shows: each post's state and the issues the ledger holds for it."""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from .post import Post
from .store import MARKED, SENT, Ledger

DELIVERY_FIELDS = ("email", "state", "provider_message_id", "error", "updated_at")


def post_statuses(
    posts: Sequence[Post], ledger: Ledger, now: datetime, *, deliveries: bool = False
) -> list[dict[str, Any]]:
    """One dict per post (newest first): slug, id, title, date, state, and its issues with counts.

    A digest (``send --digest``) is an issue of no file: it gets a row of its own, placed by the
    time it was planned, so its counts and refusals show like any issue's.
    ``deliveries`` adds every per-recipient delivery to each issue (large: for ``--json`` only).
    """
    rows = []
    for post in posts:
        records = ledger.issues.issues_for_post(post.id)
        issues = [_issue(record, post.content_hash, ledger, deliveries) for record in records]
        rows.append(
            {
                "slug": post.slug,
                "id": post.id,
                "title": post.title,
                "date": post.date.isoformat(),
                "state": post_state(post, issues, now),
                "issues": issues,
            }
        )
    return _with_digests(rows, {post.id for post in posts}, ledger, deliveries)


def _issue(record: Any, content_hash: str, ledger: Ledger, deliveries: bool) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "key": record.key,
        "kind": record.kind,
        "status": record.status,
        "provider": record.provider,
        "recipients": record.recipients,
        "created_at": record.created_at,
        "sent_at": record.sent_at,
        "changed_since_sent": record.content_hash != content_hash,
        "counts": ledger.sends.delivery_counts(record.id),
        "feedback": ledger.sends.feedback_counts(record.id),  # bounced / complained since, from webhooks
    }
    if deliveries:
        entry["deliveries"] = [{k: d[k] for k in DELIVERY_FIELDS} for d in ledger.sends.deliveries(record.id)]
    return entry


def _with_digests(
    rows: list[dict[str, Any]], file_ids: set[str], ledger: Ledger, deliveries: bool
) -> list[dict[str, Any]]:
    """``rows`` (newest first) with one row per digest issue of the ledger, merged in by the time it was planned."""
    from .schedule import is_digest

    digests: list[dict[str, Any]] = []
    for record in ledger.issues.all_issues():
        if not is_digest(record.slug) or record.post_id in file_ids:
            continue
        state = str(record.status) if record.status in (SENT, MARKED) else "sending"  # planning is sending too
        digests.append(
            {
                "slug": record.slug,
                "id": record.post_id,
                "title": record.subject,
                "date": record.created_at,
                "state": state,
                "issues": [_issue(record, record.content_hash, ledger, deliveries)],
            }
        )
    if not digests:
        return rows
    digests.sort(key=lambda row: datetime.fromisoformat(row["date"]), reverse=True)
    return list(heapq.merge(rows, digests, key=lambda row: datetime.fromisoformat(row["date"]), reverse=True))


def post_state(post: Post, issues: list[dict[str, Any]], now: datetime) -> str:
    """sent, marked, sending, draft, scheduled or not sent — the first that applies."""
    statuses = {i["status"] for i in issues}
    for state in ("sent", "marked", "sending"):
        if state in statuses:
            return state
    if post.draft:
        return "draft"
    if post.date > now:
        return "scheduled"
    return "not sent"


def status_line(row: dict[str, Any]) -> str:
    """A post's status as one line of text, as ``newsletter status`` prints it."""
    line = f"{row['state']:<9} {row['date'][:10]}  {row['slug']}"
    done = next((i for i in reversed(row["issues"]) if i["status"] in ("sent", "marked")), None)
    if done and done["status"] == "sent":
        what = "correction sent" if done["kind"] == "correction" else "sent"
        audience = done["recipients"] if done["recipients"] is not None else f"the {done['provider']} audience"
        line += f"  {what} {done['sent_at'][:16]} to {audience} via {done['provider']}"
        counts, feedback = done.get("counts", {}), done.get("feedback", {})
        if counts or any(feedback.values()):
            line += (
                f" — delivered {counts.get('accepted', 0)}, rejected {counts.get('rejected', 0)},"
                f" bounced {feedback.get('bounced', 0)}, complained {feedback.get('complained', 0)}"
            )
        if done["changed_since_sent"]:
            line += " (changed since sent)"
    elif done:
        line += f"  marked sent {done['sent_at'][:16]}"
    return line
