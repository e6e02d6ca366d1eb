"""Route 53's API on loopback for the tests: moto's server, an emulator of AWS's APIs (not
Route 53 itself), in a process of its own, stopped by its pid.

Its IAM checks are on once the hosted zones and an IAM user exist, so a wrong secret is
refused (SignatureDoesNotMatch) as AWS would. moto 5 computes the signature of a request
without a body over its parameters instead of an empty payload, which refuses every GET
of a REST API (ListHostedZonesByName, GetChange, ...) signed correctly; run as
`python -m tests.support.route53api`, this module fixes that one method and starts
moto's server. What moto does not check (the 255-octet character-string and the 32,000
characters of a request) the unit tests check of rotator's own code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rotator.config.backends.route53 import AwsKeys
from rotator.demo.localdns import PRIMARY, free_port
from rotator.demo.processes import stop_process, track
from rotator.domain.errors import RotatorError

ROOT = str(Path(__file__).resolve().parents[2])
# What rotator's backend needs, and nothing else (README: route53).
ACTIONS = [
    "route53:ChangeResourceRecordSets",
    "route53:GetChange",
    "route53:ListResourceRecordSets",
    "route53:ListHostedZonesByName",
]
SETUP_KEYS = AwsKeys("AKIAIOSFODNN7EXAMPLE", "setup-before-iam-checks")


class Route53Api:
    def __init__(
        self,
        base: Path,
        zones: Sequence[str] = (),
        private_zones: Sequence[str] = (),
        twin_zones: Sequence[str] = (),
        start_timeout: float = 20.0,
    ) -> None:
        """`twin_zones`: zones of `zones` that get a second public hosted zone of the same
        name (its id in twin_ids), as when a zone was made again by mistake."""
        self.base = Path(base)
        self.zones = [z.rstrip(".").lower() for z in zones]
        self.private_zones = [z.rstrip(".").lower() for z in private_zones]
        self.twin_zones = [z.rstrip(".").lower() for z in twin_zones]
        self.start_timeout = start_timeout
        self.port = free_port((PRIMARY,))
        self.url = f"http://{PRIMARY}:{self.port}"
        self.zone_ids: dict[str, str] = {}  # zone -> bare hosted zone id
        self.twin_ids: dict[str, str] = {}
        self.keys = SETUP_KEYS  # the IAM user allowed ACTIONS, once started
        self.outsider = SETUP_KEYS  # an IAM user allowed nothing
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Route53Api:
        self.base.mkdir(parents=True, exist_ok=True)
        log = open(self.base / "moto.log", "ab")  # noqa: SIM115 - owned by the process
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.support.route53api", "-H", PRIMARY, "-p", str(self.port)],
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONPATH": ROOT},
        )
        log.close()
        track(self.proc)
        try:
            self._wait_ready()
            self._populate()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RotatorError(f"moto's server exited {self.proc.returncode}: {self.tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/moto-api/", timeout=1):
                    return
            except (OSError, urllib.error.URLError):
                time.sleep(0.1)
        raise RotatorError(f"moto's server did not answer within {self.start_timeout:g}s")

    def _populate(self) -> None:
        iam = self.client("iam", SETUP_KEYS)
        policy = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": ACTIONS, "Resource": "*"}],
        }
        for user in ("rotator", "outsider"):
            iam.create_user(UserName=user)
            key = iam.create_access_key(UserName=user)["AccessKey"]
            keys = AwsKeys(key["AccessKeyId"], key["SecretAccessKey"])
            if user == "rotator":
                iam.put_user_policy(
                    UserName=user, PolicyName="dkim", PolicyDocument=json.dumps(policy)
                )
                self.keys = keys
            else:
                self.outsider = keys
        r53 = self.client("route53", SETUP_KEYS)
        for zone in [*self.zones, *self.private_zones]:
            extra: dict[str, Any] = {}
            if zone in self.private_zones:
                extra = {
                    "HostedZoneConfig": {"PrivateZone": True},
                    "VPC": {"VPCRegion": "us-east-1", "VPCId": "vpc-0123456789abcdef0"},
                }
            made = r53.create_hosted_zone(Name=zone, CallerReference=zone, **extra)
            self.zone_ids[zone] = made["HostedZone"]["Id"].rsplit("/", 1)[-1]
        for zone in self.twin_zones:
            made = r53.create_hosted_zone(Name=zone, CallerReference=f"{zone} again")
            self.twin_ids[zone] = made["HostedZone"]["Id"].rsplit("/", 1)[-1]
        # from now on every request is checked against IAM, as on AWS
        request = urllib.request.Request(
            f"{self.url}/moto-api/reset-auth",
            data=b"0",
            method="POST",
            headers={"Content-Type": "text/plain"},
        )
        with urllib.request.urlopen(request, timeout=5):
            pass

    def client(self, service: str = "route53", keys: AwsKeys | None = None) -> Any:
        import boto3

        keys = keys or self.keys
        return boto3.session.Session(
            aws_access_key_id=keys.access_key_id,
            aws_secret_access_key=keys.secret_access_key,
            region_name="us-east-1",
        ).client(service, endpoint_url=self.url)

    def credentials_file(self, path: Path, keys: AwsKeys | None = None) -> Path:
        keys = keys or self.keys
        path.write_text(
            f"[default]\naws_access_key_id = {keys.access_key_id}\n"
            f"aws_secret_access_key = {keys.secret_access_key}\n"
        )
        path.chmod(0o600)
        return path

    def tail(self, n: int = 8) -> str:
        try:
            lines = (self.base / "moto.log").read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return " | ".join(lines[-n:])

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            stop_process(proc)


def _fix_signature_check() -> None:
    from botocore.awsrequest import AWSRequest
    from moto.iam import access_control

    def create_aws_request(self: Any) -> AWSRequest:
        signed = self._get_string_between(
            "SignedHeaders=", ",", self._headers["Authorization"]
        ).split(";")
        headers = self._create_headers_for_aws_request(signed, self._headers)
        # the payload the client signed: the body, empty when there is none
        request = AWSRequest(
            method=self._method, url=self._path, data=self._body or b"", headers=headers
        )
        request.context["timestamp"] = headers["X-Amz-Date"]
        return request

    access_control.IAMRequestBase._create_aws_request = create_aws_request  # type: ignore[method-assign]


if __name__ == "__main__":
    _fix_signature_check()
    from moto.server import main

    main(sys.argv[1:])
