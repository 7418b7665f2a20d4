from pathlib import Path

import pytest

from sidekick.config import Settings
from sidekick.errors import ConfigError

README = Path(__file__).resolve().parents[1] / "README.md"


def test_defaults_without_environment() -> None:
    s = Settings.load({})
    assert s.headless and s.max_evaluations == 3 and s.idle_minutes == 15 and s.evaluator == s.model


def test_the_first_source_naming_a_variable_wins() -> None:
    s = Settings.load({"SIDEKICK_MODEL": "env-model"}, {"SIDEKICK_MODEL": "secret-model", "SIDEKICK_HEADLESS": "0"})
    assert s.model == "env-model" and s.headless is False


def test_blank_values_mean_default() -> None:
    assert Settings.load({"SIDEKICK_MAX_EVALUATIONS": "  "}).max_evaluations == 3


@pytest.mark.parametrize(
    ("env", "value", "message"),
    [
        ("SIDEKICK_HEADLESS", "maybe", "SIDEKICK_HEADLESS must be 1 or 0"),
        ("SIDEKICK_MAX_EVALUATIONS", "three", "SIDEKICK_MAX_EVALUATIONS must be a whole number"),
        ("SIDEKICK_MODEL_RETRIES", "-1", "must not be negative"),
        ("SIDEKICK_MAX_EVALUATIONS", "-1", "SIDEKICK_MAX_EVALUATIONS must be at least 1"),
        ("SIDEKICK_MAX_EVALUATIONS", "0", "SIDEKICK_MAX_EVALUATIONS must be at least 1"),
        ("SIDEKICK_RECURSION_LIMIT", "0", "SIDEKICK_RECURSION_LIMIT must be at least 2"),
        ("SIDEKICK_RECURSION_LIMIT", "1", "SIDEKICK_RECURSION_LIMIT must be at least 2"),
        ("SIDEKICK_IDLE_MINUTES", "nan", "must be a positive number"),
        ("SIDEKICK_TOOL_TIMEOUT", "0", "must be a positive number"),
        ("SIDEKICK_ALLOWED_DOMAINS", "http://x/y", "SIDEKICK_ALLOWED_DOMAINS: 'http://x/y' is not a domain"),
        ("SIDEKICK_GUARD_LISTEN", "10.0.0.5", "SIDEKICK_GUARD_LISTEN must be host:port"),
        ("SIDEKICK_GUARD_LISTEN", "0.0.0.0:3129", "not a wildcard"),
    ],
)
def test_malformed_values_name_the_variable(env: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.load({env: value})


def test_zero_retries_and_smallest_working_budgets_are_accepted() -> None:
    loaded = Settings.load(
        {"SIDEKICK_MODEL_RETRIES": "0", "SIDEKICK_MAX_EVALUATIONS": "1", "SIDEKICK_RECURSION_LIMIT": "2"}
    )
    assert (loaded.model_retries, loaded.max_evaluations, loaded.recursion_limit) == (0, 1, 2)


def test_domain_lists_become_the_url_policy() -> None:
    policy = Settings.load({"SIDEKICK_BLOCKED_DOMAINS": "Example.com, ads.test", "SIDEKICK_ALLOW_PRIVATE_NETWORK": "1"})
    assert policy.url_policy().blocked_domains == ("example.com", "ads.test")
    assert policy.url_policy().allow_private_network


def test_the_readme_documents_every_variable() -> None:
    text = README.read_text()
    missing = [env for env, _, _ in Settings.documented() if f"`{env}`" not in text]
    assert not missing, f"README.md does not document {missing}"
