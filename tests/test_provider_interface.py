"""The typed provider interface: what a plug-in must implement is checked when it is loaded."""

from __future__ import annotations

from importlib.metadata import EntryPoint

import pytest

import newsletter.providers as providers
from newsletter.errors import ConfigError
from newsletter.providers.base import (
    AUDIENCE,
    BATCH,
    AudienceProvider,
    BatchProvider,
    Capabilities,
    Provider,
    check_provider_class,
)  # fmt: skip

BATCH_CAPS = Capabilities(family=BATCH, max_batch=10, idempotency=False, lookup=False, custom_headers=True,
                          unsubscribe="ours")  # fmt: skip


class Complete(BatchProvider):
    name = "complete"
    capabilities = BATCH_CAPS

    @classmethod
    def from_config(cls, settings, *, config, environ):
        return cls()

    def send_chunk(self, request):
        return []

    def send_message(self, message, *, key):
        return ""


class NoSendChunk(BatchProvider):
    name = "nosend"
    capabilities = BATCH_CAPS

    @classmethod
    def from_config(cls, settings, *, config, environ):
        return cls()

    def send_message(self, message, *, key):
        return ""


class ClaimsLookup(Complete):
    capabilities = Capabilities(family=BATCH, max_batch=10, idempotency=False, lookup=True, custom_headers=True,
                                unsubscribe="ours")  # fmt: skip


class ClaimsWebhooks(Complete):
    capabilities = Capabilities(family=BATCH, max_batch=10, idempotency=False, lookup=False, custom_headers=True,
                                unsubscribe="ours", webhooks=True)  # fmt: skip


class WrongFamily(Complete):
    capabilities = Capabilities(family=AUDIENCE, max_batch=None, idempotency=True, lookup=False,
                                custom_headers=False, unsubscribe="provider")  # fmt: skip


def test_a_complete_provider_passes_the_check():
    assert check_provider_class("complete", Complete) is Complete


@pytest.mark.parametrize(
    "factory, words",
    [
        (NoSendChunk, "does not implement send_chunk"),
        (ClaimsLookup, "declares lookup=True but does not implement lookup_chunk"),
        (ClaimsWebhooks, "declares webhooks=True but does not implement verify_webhook, parse_events"),
        (WrongFamily, "declares family 'audience' but subclasses the batch base"),
        (object, "is not a subclass of BatchProvider or AudienceProvider"),
        (Provider, "is not a subclass of BatchProvider or AudienceProvider"),
    ],
)
def test_an_incomplete_plugin_is_refused_in_one_line_naming_it(factory, words):
    with pytest.raises(TypeError) as caught:
        check_provider_class("acme", factory)
    message = str(caught.value)
    assert message.startswith("provider plug-in 'acme' ") and words in message
    assert "\n" not in message


def test_an_audience_provider_must_publish_send_tests_and_subscribe():
    assert {"publish", "send_test", "subscribe", "send_message", "from_config"} <= AudienceProvider.__abstractmethods__


def test_a_broken_entry_point_is_listed_with_its_reason_and_refused_on_use(monkeypatch):
    module = __name__
    entries = [
        EntryPoint("complete", f"{module}:Complete", providers.GROUP),
        EntryPoint("nosend", f"{module}:NoSendChunk", providers.GROUP),
        EntryPoint("gone", "no_such_module_anywhere:Thing", providers.GROUP),
    ]
    monkeypatch.setattr(providers, "entry_points", lambda group: entries)
    found = providers.available()
    assert found["complete"] is Complete
    assert isinstance(found["nosend"], providers.BrokenPlugin)
    assert found["nosend"].error == "provider plug-in 'nosend' does not implement send_chunk"
    assert "failed to load" in found["gone"].error
    with pytest.raises(ConfigError) as caught:
        providers.provider_class("nosend")
    assert "does not implement send_chunk" in caught.value.message


def test_every_built_in_provider_is_a_checked_subclass_of_its_family():
    found = providers.available()
    for name in ("outbox", "smtp", "mailgun", "postmark", "resend", "buttondown"):
        factory = found[name]
        assert not isinstance(factory, providers.BrokenPlugin), factory
        family = AudienceProvider if factory.capabilities.family == AUDIENCE else BatchProvider
        assert issubclass(factory, family)


def test_the_engine_never_probes_providers_for_methods():
    import inspect

    import newsletter.chunk_delivery
    import newsletter.cli
    import newsletter.project
    import newsletter.send
    import newsletter.send_plan
    import newsletter.web

    engine = (newsletter.send, newsletter.send_plan, newsletter.chunk_delivery)
    for module in (*engine, newsletter.web, newsletter.cli, newsletter.project):
        source = inspect.getsource(module)
        assert "hasattr(provider" not in source and "getattr(provider" not in source
        assert "getattr(factory" not in source and "hasattr(factory" not in source


def test_choosing_a_provider_imports_only_that_plugin():
    """An outbox send must not pay for (or break on) another plug-in's imports, such as boto3 for SES."""
    import subprocess
    import sys

    code = ("import sys; from newsletter.providers import provider_class; provider_class('outbox'); "
            "print('boto3' in sys.modules, 'newsletter.providers.ses' in sys.modules)")  # fmt: skip
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.split() == ["False", "False"]
