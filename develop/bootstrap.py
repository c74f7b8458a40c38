"""Onboard a fresh Home Assistant and add the smartmeter entry, over its REST API.

Standard library only. Used by ``scripts/develop`` (as a script) and by the
end-to-end smoke test (as a module)::

    python develop/bootstrap.py --url http://127.0.0.1:8123 --device .develop/ttyP1

Steps: wait until Home Assistant answers; create the owner account through the
onboarding API (or log in with it when it exists); then run the integration's
config flow (user menu -> "serial" -> device path -> confirm) unless an entry
for the device exists.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

DOMAIN = "smartmeter"


class BootstrapError(Exception):
    """Home Assistant did not do what was asked."""


@dataclass
class HassClient:
    """A tiny synchronous REST client."""

    base: str
    token: str | None = None
    timeout: float = 30.0

    @property
    def client_id(self) -> str:
        """The OAuth client id (this script pretends to be the frontend)."""
        return self.base + "/"

    def request(
        self,
        method: str,
        path: str,
        payload: dict[str, Any] | None = None,
        *,
        form: dict[str, str] | None = None,
        auth: bool = True,
    ) -> tuple[int, Any]:
        """Send a request; return (status, decoded JSON or text)."""
        headers = {"Accept": "application/json"}
        data = None
        if form is not None:
            data = urllib.parse.urlencode(form).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        elif payload is not None:
            data = json.dumps(payload).encode()
            headers["Content-Type"] = "application/json"
        if auth and self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=headers)  # noqa: S310
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:  # noqa: S310
                status, body = resp.status, resp.read()
        except urllib.error.HTTPError as err:
            status, body = err.code, err.read()
        text = body.decode("utf-8", "replace")
        try:
            return status, json.loads(text) if text else None
        except json.JSONDecodeError:
            return status, text

    def call(self, method: str, path: str, payload: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        """Like :meth:`request` but raise unless the status is 2xx."""
        status, body = self.request(method, path, payload, **kwargs)
        if not 200 <= status < 300:
            raise BootstrapError(f"{method} {path} -> {status}: {body}")
        return body

    # ------------------------------------------------------------ lifecycle

    def onboarding_steps(self) -> dict[str, bool]:
        """Onboarding steps and whether they are done (all done: ``{}``)."""
        status, body = self.request("GET", "/api/onboarding", auth=False)
        if status == 404:  # onboarded: the onboarding API is gone
            return {}
        if status != 200 or not isinstance(body, list):
            raise BootstrapError(f"GET /api/onboarding -> {status}: {body}")
        return {step["step"]: step["done"] for step in body}

    def wait_until_up(self, timeout: float = 120.0, alive: Any = None) -> None:
        """Poll ``/api/onboarding`` until Home Assistant serves it (or 404 once onboarded).

        ``alive`` is an optional callable; when it returns False (the process
        died) waiting stops at once.
        """
        deadline = time.monotonic() + timeout
        last: object = None
        while time.monotonic() < deadline:
            if alive is not None and not alive():
                raise BootstrapError("Home Assistant exited during start-up")
            try:
                status, body = self.request("GET", "/api/onboarding", auth=False)
            except (OSError, urllib.error.URLError) as err:
                last = err
            else:
                if (status == 200 and isinstance(body, list)) or status == 404:
                    return
                last = (status, body)
            time.sleep(0.5)
        raise BootstrapError(f"Home Assistant did not answer within {timeout:.0f} s: {last}")

    def _token_from_code(self, code: str) -> str:
        body = self.call(
            "POST",
            "/auth/token",
            form={"grant_type": "authorization_code", "code": code, "client_id": self.client_id},
            auth=False,
        )
        return str(body["access_token"])

    def onboard(self, name: str, username: str, password: str) -> bool:
        """Create the owner (when onboarding has not) and log in; True if created."""
        steps = self.onboarding_steps()
        created = False
        if not steps.get("user", True):
            body = self.call(
                "POST",
                "/api/onboarding/users",
                {
                    "client_id": self.client_id,
                    "name": name,
                    "username": username,
                    "password": password,
                    "language": "en",
                },
                auth=False,
            )
            self.token = self._token_from_code(body["auth_code"])
            created = True
        else:
            self.login(username, password)
        return created

    def finish_onboarding(self) -> None:
        """Mark the remaining steps done (analytics off, no extra integrations).

        The core-config step is not posted: it would add internet integrations
        (met, radio browser...). ``scripts/develop`` seeds it as done instead.
        """
        steps = self.onboarding_steps()
        if not steps.get("analytics", True):
            self.call("POST", "/api/onboarding/analytics", {})
        if not steps.get("integration", True):
            self.call(
                "POST",
                "/api/onboarding/integration",
                {"client_id": self.client_id, "redirect_uri": self.base + "/?auth_callback=1"},
            )

    def login(self, username: str, password: str) -> None:
        """Log in through the login flow (Home Assistant is onboarded)."""
        flow = self.call(
            "POST",
            "/auth/login_flow",
            {
                "client_id": self.client_id,
                "handler": ["homeassistant", None],
                "redirect_uri": self.base + "/",
            },
            auth=False,
        )
        result = self.call(
            "POST",
            f"/auth/login_flow/{flow['flow_id']}",
            {"client_id": self.client_id, "username": username, "password": password},
            auth=False,
        )
        if result.get("type") != "create_entry":
            raise BootstrapError(f"login as {username!r} failed: {result.get('errors') or result}")
        self.token = self._token_from_code(result["result"])

    # ------------------------------------------------------------ the entry

    def entries(self, domain: str = DOMAIN) -> list[dict[str, Any]]:
        """Config entries of ``domain``."""
        body = self.call("GET", f"/api/config/config_entries/entry?domain={domain}")
        return [entry for entry in body if entry.get("domain") == domain]

    def add_serial_entry(self, device: str, *, domain: str = DOMAIN) -> dict[str, Any]:
        """Run the config flow: menu -> serial -> device -> confirm; return the result."""
        result = self.call(
            "POST", "/api/config/config_entries/flow", {"handler": domain, "show_advanced_options": False}
        )
        flow_id = result["flow_id"]
        path = f"/api/config/config_entries/flow/{flow_id}"
        for _ in range(6):
            kind, step = result.get("type"), result.get("step_id")
            if kind == "create_entry":
                return dict(result)
            if kind == "abort":
                raise BootstrapError(f"config flow aborted: {result.get('reason')}")
            if kind == "menu":
                result = self.call("POST", path, {"next_step_id": "serial"})
            elif kind == "form" and result.get("errors"):
                raise BootstrapError(f"config flow step {step!r} failed: {result['errors']}")
            elif kind == "form" and step in ("serial", "user"):
                result = self.call("POST", path, {"device": device})
            elif kind == "form":  # confirm
                result = self.call("POST", path, {})
            else:
                raise BootstrapError(f"unexpected config flow result: {result}")
        raise BootstrapError(f"config flow did not finish: {result}")

    def ensure_entry(self, device: str) -> tuple[dict[str, Any], bool]:
        """The entry for ``device``, created when missing; (entry, created)."""
        existing = self.entries()
        if existing:
            return existing[0], False
        return self.add_serial_entry(device), True

    def states(self) -> list[dict[str, Any]]:
        """All entity states."""
        return list(self.call("GET", "/api/states"))


def main(argv: list[str] | None = None) -> int:
    """Command line for ``scripts/develop``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8123")
    parser.add_argument("--device", required=True, help="serial device (or serialx URL) of the meter")
    parser.add_argument("--user", default="dev")
    parser.add_argument("--password", default="dev")
    parser.add_argument("--timeout", type=float, default=300)
    args = parser.parse_args(argv)
    client = HassClient(args.url.rstrip("/"))
    try:
        client.wait_until_up(args.timeout)
        if client.onboard("Dev", args.user, args.password):
            print(f"bootstrap: created the owner account {args.user!r} / {args.password!r}")  # noqa: T201
        client.finish_onboarding()
        entry, created = client.ensure_entry(args.device)
    except BootstrapError as err:
        print(f"bootstrap: {err}", file=sys.stderr)  # noqa: T201
        return 1
    except KeyboardInterrupt:
        return 130
    title = entry.get("title") or entry.get("result", {}).get("title")
    print(f"bootstrap: {'created' if created else 'found'} the smartmeter entry {title!r}")  # noqa: T201
    sensors = [s["entity_id"] for s in client.states() if s["entity_id"].startswith("sensor.")]
    print(f"bootstrap: {len(sensors)} sensors, e.g. {', '.join(sorted(sensors)[:4])}")  # noqa: T201
    return 0


if __name__ == "__main__":
    sys.exit(main())
