"""Channel policy loading and decisions (bot.policy)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from bot.errors import PolicyError
from bot.policy import ChannelPolicy, Policy, parse_duration
from bot.scheduling.approvals import ApprovalRules

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "imagebot.toml"

GOOD = """\
# a comment
[default]
cloud = "main"
servers = ["*"]
approval_expiry = "24h"

[channels.C0OPS]
servers = ["web-*", "db-?"]
creators = ["U0ALICE", "S0OPS"]
approvers = ["<@U0BOB>", "<!subteam^S0LEADS|leads>"]
allow_self_approval = true
approval_expiry = "90m"
notify_channel = "#Ops-Alerts"
mention = "<!here>"

[channels."#dev"]
cloud = "devcloud"
enabled = true

[channels."#frozen"]
enabled = false
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "imagebot.toml"
    path.write_text(text, encoding="utf-8")
    return path


def load_error(tmp_path: Path, text: str) -> PolicyError:
    path = write(tmp_path, text)
    with pytest.raises(PolicyError) as info:
        Policy.load(path)
    err = info.value
    assert err.path == str(path)
    assert str(path) in str(err)
    return err


def test_default_policy_without_a_file() -> None:
    policy = Policy.default()
    ops = policy.for_channel("C0ANY", "anything")
    assert ops.enabled and ops.cloud is None
    assert ops.may_create("U0ANYONE") and ops.may_touch("whatever-1")
    rules = ops.approval_rules()
    assert rules == ApprovalRules() and not rules.restricted
    assert ops.mention is None and ops.notify_channel is None


def test_from_env(tmp_path: Path) -> None:
    assert Policy.from_env({}) == Policy.default()
    path = write(tmp_path, GOOD)
    assert Policy.from_env({"IMAGEBOT_POLICY": str(path)}).for_channel("C0OPS").cloud == "main"
    with pytest.raises(PolicyError, match="does not exist"):
        Policy.from_env({"IMAGEBOT_POLICY": str(tmp_path / "missing.toml")})


def test_good_file(tmp_path: Path) -> None:
    policy = Policy.load(write(tmp_path, GOOD))
    ops = policy.for_channel("C0OPS", "ops")
    assert ops.name == "C0OPS"
    assert ops.cloud == "main"  # inherited from [default]
    assert ops.creators == {"U0ALICE"} and ops.creator_groups == {"S0OPS"}
    assert ops.approvers == {"U0BOB"} and ops.approver_groups == {"S0LEADS"}
    assert ops.approval_expiry == timedelta(minutes=90)
    assert ops.notify_channel == "#ops-alerts" and ops.mention == "<!here>"
    rules = ops.approval_rules()
    assert rules.allow_self_approval and rules.expiry == timedelta(minutes=90)
    assert rules.is_approver("U0CAROL", frozenset({"S0LEADS"}))
    assert not rules.is_approver("U0CAROL", frozenset({"S0OPS"}))

    dev = policy.for_channel("C0DEV", "#DEV")
    assert dev.name == "#dev" and dev.cloud == "devcloud"
    assert dev.approval_expiry == timedelta(hours=24)
    other = policy.for_channel("C0OTHER", "random")
    assert other.name == "default" and other.cloud == "main"
    frozen = policy.for_channel("C0FRZ", "frozen")
    assert not frozen.may_create("U0ALICE") and not frozen.may_touch("web-1")
    assert "disabled" in frozen.who_may_create()


def test_id_wins_over_name(tmp_path: Path) -> None:
    text = '[channels.C0OPS]\ncloud = "by-id"\n[channels."#ops"]\ncloud = "by-name"\n'
    policy = Policy.load(write(tmp_path, text))
    assert policy.for_channel("C0OPS", "ops").cloud == "by-id"
    assert policy.for_channel("C0RENAMED", "ops").cloud == "by-name"


def test_creators_and_globs() -> None:
    ops = ChannelPolicy(servers=("web-*", "db-?", "app-[0-9]"),
                        creators=frozenset({"U0ALICE"}), creator_groups=frozenset({"S0OPS"}))
    assert ops.may_create("U0ALICE")
    assert ops.may_create("U0CAROL", frozenset({"S0OPS"}))
    assert not ops.may_create("U0EVE", frozenset({"S0DEV"}))
    assert "<@U0ALICE>" in ops.who_may_create()
    assert ops.may_touch("web-01") and ops.may_touch("db-1") and ops.may_touch("app-7")
    assert not ops.may_touch("db-10") and not ops.may_touch("app-x")
    assert not ops.may_touch("WEB-01")  # case-sensitive, like server names
    assert not ops.may_touch("prod-web-01")


def test_example_file_is_valid_and_matches_the_sandbox() -> None:
    policy = Policy.load(EXAMPLE)
    ops = policy.for_channel("C0OPS", "ops")
    assert ops.may_create("U0ALICE")
    rules = ops.approval_rules()
    assert rules.is_approver("U0BOB") and not rules.allow_self_approval
    assert ops.notify_channel == "#ops-alerts"


@pytest.mark.parametrize("text, line, key, fragment", [
    ('[default]\ncloud = "a"\n\n[channels.C0OPS]\napprovers = ["U0BOB", "bob"]\n',
     5, 'channels.C0OPS.approvers', "'bob' is not a Slack user id"),
    ('[default]\napprovers = [\n  "U0BOB",\n  "alice",\n]\n',
     4, "default.approvers", "'alice'"),
    ('[channels."#ops"]\nservers = ["web-*"]\napproval_expiry = "1 day"\n',
     3, 'channels."#ops".approval_expiry', "not a duration"),
    ('[default]\napproval_expiry = "45d"\n', 2, "default.approval_expiry", "out of range"),
    ('[default]\nallow_self_approval = "no"\n', 2, "default.allow_self_approval",
     "true or false"),
    ('[default]\nservers = []\n', 2, "default.servers", "list of name patterns"),
    ('[default]\ncreators = "U0ALICE"\n', 2, "default.creators", "list of Slack ids"),
    ('[default]\nnotify_channel = "ops alerts"\n', 2, "default.notify_channel",
     "not a #channel-name"),
    ('[default]\nmention = "@here"\n', 2, "default.mention", 'write "<!here>"'),
    ('[default]\ncloud = ""\n', 2, "default.cloud", "non-empty"),
    ('[default]\ncloud = "x"\n[channels.ops]\ncloud = "y"\n', 3, "channels.ops",
     "quote it"),
    ('[channels.C0OPS]\ncloud = "x"\n[channels.C0OPS.extra]\nfoo = 1\n', 3,
     "channels.C0OPS.extra", "unknown key 'extra'"),
])
def test_bad_values_name_file_line_and_key(tmp_path: Path, text: str, line: int, key: str,
                                           fragment: str) -> None:
    err = load_error(tmp_path, text)
    assert (err.line, err.key) == (line, key)
    assert fragment in str(err)
    assert f":{line} [{key}]" in str(err)


def test_unknown_keys_suggest(tmp_path: Path) -> None:
    err = load_error(tmp_path, '[default]\ncloud = "a"\napprover = ["U0BOB"]\n')
    assert (err.line, err.key) == (3, "default.approver")
    assert "did you mean 'approvers'?" in str(err)
    err = load_error(tmp_path, '[channels.C0OPS]\n\n  severs = ["web-*"]\n')
    assert (err.line, err.key) == (3, "channels.C0OPS.severs")
    assert "did you mean 'servers'?" in str(err)
    err = load_error(tmp_path, '[defaults]\ncloud = "a"\n')
    assert err.line == 1 and "did you mean 'default'?" in str(err)
    err = load_error(tmp_path, '[ops]\ncloud = "a"\n')
    assert 'channels."#ops"' in str(err)


def test_toml_syntax_error_uses_tomllib_line(tmp_path: Path) -> None:
    err = load_error(tmp_path, '[default]\ncloud = "a"\nservers = ["web-*"\n\n[channels.C0X]\n')
    assert err.line is not None and 3 <= err.line <= 5
    assert "not valid TOML" in str(err)
    err = load_error(tmp_path, '[default]\ncloud = \n')
    assert (err.line, err.key) == (2, "cloud")


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="does not exist"):
        Policy.load(tmp_path / "nope.toml")
    bad = tmp_path / "latin1.toml"
    bad.write_bytes(b'[default]\ncloud = "caf\xe9"\n')
    with pytest.raises(PolicyError, match="not UTF-8"):
        Policy.load(bad)


def test_duplicate_channel_names_differing_in_case(tmp_path: Path) -> None:
    err = load_error(tmp_path, '[channels."#ops"]\ncloud = "a"\n[channels."#OPS"]\ncloud = "b"\n')
    assert "listed twice" in str(err)


@pytest.mark.parametrize("text, expected", [
    ("24h", timedelta(hours=24)), ("90m", timedelta(minutes=90)), ("2d", timedelta(days=2)),
    ("1d12h", timedelta(days=1, hours=12)), ("1 day", None), ("", None), ("0h", None),
    ("h", None), ("12", None),
])
def test_parse_duration(text: str, expected: timedelta | None) -> None:
    assert parse_duration(text) == expected


def test_admins_are_named_people_and_may_use_all() -> None:
    policy = Policy.loads('[default]\nadmins = ["U0CAROL", "<!subteam^S0OPS>"]\n'
                          '[channels."#dev"]\nadmins = []\n'
                          '[channels.C0OFF]\nenabled = false\n')
    ops = policy.for_channel("C0OPS", "ops")
    assert ops.is_admin("U0CAROL") and ops.is_admin("U0BOB", frozenset({"S0OPS"}))
    assert not ops.is_admin("U0BOB")
    assert not policy.for_channel("C0DEV", "dev").is_admin("U0CAROL")  # [] = nobody
    assert not policy.for_channel("C0OFF").is_admin("U0CAROL")  # disabled: nothing at all
    assert not Policy.default().for_channel("C0OPS").is_admin("U0ALICE")  # never "anyone"
    with pytest.raises(PolicyError, match="admins"):
        Policy.loads('[default]\nadmins = ["carol"]\n')
