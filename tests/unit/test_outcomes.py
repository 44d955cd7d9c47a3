"""Which runs get an outcome message, by a playbook's `notify.on`."""

from __future__ import annotations

import pytest

from service.vocabulary.outcomes import NotifyPolicy, OutcomeNotice


@pytest.mark.parametrize(
    ("on", "status", "wrote", "wanted"),
    [
        (None, "succeeded", True, True),  # the default: runs that wrote …
        (None, "failed", False, True),  # … and runs that failed
        (None, "succeeded", False, False),  # a read-only or dry-run success is quiet
        (None, "blocked_by_policy", False, False),
        (["blocked"], "blocked_by_policy", False, True),
        (["blocked"], "failed", False, False),
        (["succeeded"], "succeeded", False, True),
        (["rejected", "expired"], "expired", False, True),
        (["any"], "resolved_before_action", False, True),
        ([], "failed", True, False),  # on: [] silences a playbook
    ],
)
def test_notify_on_decides_which_runs_are_announced(
    on: list[str] | None, status: str, wrote: bool, wanted: bool
) -> None:
    """The default announces runs that wrote or failed; an explicit list replaces it."""
    policy = NotifyPolicy() if on is None else NotifyPolicy.model_validate({"on": on})
    assert policy.wants(status, wrote) is wanted


def test_an_unknown_event_is_refused_when_the_playbook_loads() -> None:
    """A typo in `notify.on` is a load error, not a silent 'never'."""
    with pytest.raises(ValueError, match="wrote"):
        NotifyPolicy.model_validate({"on": ["wrotee"]})


def test_the_message_text_says_playbook_alert_status_and_why() -> None:
    """The first line of every outcome message, in Slack and in the webhook's `text`."""
    notice = OutcomeNotice(
        run_id="p/f/1", playbook="stuck-jobs", alertname="JobsStuck", mode="dry-run", status="failed", reason="x"
    )
    assert notice.text() == "remediate stuck-jobs for JobsStuck: failed (dry-run) — x"
