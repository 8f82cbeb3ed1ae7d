"""What ``newsletter status`` shows: each post's state and the issues the ledger holds for it."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from .post import Post
from .store import Ledger

DELIVERY_FIELDS = ("email", "state", "provider_message_id", "error", "updated_at")


def post_statuses(
    posts: Sequence[Post], ledger: Ledger, now: datetime, *, deliveries: bool = False
) -> list[dict[str, Any]]:
    """One dict per post (newest first): slug, id, title, date, state, and its issues with counts.

    ``deliveries`` adds every per-recipient delivery to each issue (large: for ``--json`` only).
    """
    rows = []
    for post in posts:
        issues = []
        for record in ledger.issues.issues_for_post(post.id):
            entry: dict[str, Any] = {
                "key": record.key,
                "kind": record.kind,
                "status": record.status,
                "provider": record.provider,
                "recipients": record.recipients,
                "created_at": record.created_at,
                "sent_at": record.sent_at,
                "changed_since_sent": record.content_hash != post.content_hash,
                "counts": ledger.sends.delivery_counts(record.id),
                "feedback": ledger.sends.feedback_counts(record.id),  # bounced / complained since, from webhooks
            }
            if deliveries:
                entry["deliveries"] = [{k: d[k] for k in DELIVERY_FIELDS} for d in ledger.sends.deliveries(record.id)]
            issues.append(entry)
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
    return rows


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
