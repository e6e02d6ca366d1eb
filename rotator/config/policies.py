"""Load and validate policies/*.toml (one policy per file, named after the file)."""

from __future__ import annotations

import tomllib
from pathlib import Path

from ..domain.errors import NotFound, PolicyError
from ..domain.policy import Policy, parse_policy
from .cron import cron_schedule
from .values import refuse_loose


def load_policy_file(path: Path) -> Policy:
    refuse_loose(path, "a policy")
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise PolicyError(f"{path}: no such policy file") from None
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"{path}: invalid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise PolicyError(f"{path}: not UTF-8 text; a policy is a TOML file") from None
    except OSError as exc:
        raise PolicyError(f"{path}: cannot read the policy: {exc.strerror}") from None
    return parse_policy(path.stem, data, str(path), cron_schedule)


def check_companion(policy: Policy, policies: dict[str, Policy]) -> None:
    """[key] companion names a policy of the other algorithm that has none of its own."""
    if not policy.companion:
        return
    other = policies.get(policy.companion)
    where = f"{policy.source}: [key].companion"
    if other is None:
        known = ", ".join(sorted(policies)) or "none"
        raise PolicyError(f"{where}: no policy {policy.companion!r} (known: {known})")
    if other.algorithm == policy.algorithm:
        raise PolicyError(
            f"{where}: {other.name} makes {other.algorithm} keys too; a companion is the "
            "other algorithm (RSA beside Ed25519)"
        )
    if other.companion:
        raise PolicyError(f"{where}: {other.name} has a companion of its own; chain none")
    if other.selector_template == policy.selector_template:
        raise PolicyError(
            f"{where}: {other.name} uses the same selector template; give it another so the "
            "two keys of a domain never compete for a selector"
        )


class PolicySet:
    """All policies of a directory, validated up front so a bad file stops start-up."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        if not self.directory.is_dir():
            raise PolicyError(
                f"{self.directory}: policy directory not found; set policy_dir in the config"
            )
        refuse_loose(self.directory, "the policy directory")
        self.policies = {p.stem: load_policy_file(p) for p in sorted(self.directory.glob("*.toml"))}
        for policy in self.policies.values():
            check_companion(policy, self.policies)

    def get(self, name: str) -> Policy:
        try:
            return self.policies[name]
        except KeyError:
            known = ", ".join(sorted(self.policies)) or "none"
            raise NotFound(
                f"policy {name!r} not found in {self.directory} (known: {known})"
            ) from None

    def names(self) -> list[str]:
        return sorted(self.policies)
