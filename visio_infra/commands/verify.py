"""`visio verify <stack>`: run the verification suite (tests/verify) against a deployed stack.

It reads the stack's outputs (`pulumi stack output --json --show-secrets`, with the project's state
settings from scripts/pulumi-env.sh), hands them to pytest through a 0600 file named in an
environment variable (never on a command line), runs the testinfra suites in parallel (pytest-xdist),
prints a summary per role and host and one line per real call (the call reports the suite writes under
reports/verify-<stack>-<timestamp>/), writes JUnit XML under reports/, and exits non-zero naming every
failed check. Every secret value of the outputs is masked in anything it prints, and in the JUnit XML
and call reports the run wrote.

    visio verify lab
    visio verify lab -k "turn or redis" --junit reports/verify-lab.xml
    visio verify lab --hardening     # also testssl.sh on every TLS listener and Lynis on every node
                                     # (ssh-audit always runs)
    visio verify interieur --outputs-file outputs.json   # outputs fetched beforehand (CI artefact)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from xml.sax.saxutils import escape as xml_escape

from visio_infra.cloud.outputs import SECRET_OUTPUTS

ROOT = Path(__file__).resolve().parent.parent.parent
SUITE = ROOT / "tests" / "verify"
REPORTS = ROOT / "reports"
MASK = "********"


class VerifyError(RuntimeError):
    """The suite could not be run at all (no outputs, no stack); distinct from checks failing."""


def fetch_outputs(stack: str) -> dict[str, Any]:
    """The stack's outputs with secrets in clear, read through the project's Pulumi environment."""
    env_script = ROOT / "scripts" / "pulumi-env.sh"
    if not env_script.exists():
        raise VerifyError(f"{env_script} is missing; it sets the state backend and toolchain for pulumi")
    command = ['source "$1" >/dev/null && exec pulumi stack output --json --show-secrets --stack "$2"']
    done = subprocess.run(
        ["bash", "-c", command[0], "visio-verify", str(env_script), stack],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if done.returncode != 0:
        raise VerifyError(
            f"`pulumi stack output --stack {stack}` failed ({done.returncode}): {done.stderr.strip()[-800:]}"
        )
    try:
        outputs = json.loads(done.stdout)
    except json.JSONDecodeError as exc:
        raise VerifyError(f"pulumi printed something that is not JSON ({exc.msg})") from None
    if not isinstance(outputs, dict) or "inventory" not in outputs:
        raise VerifyError(f"stack {stack} has no `inventory` output; deploy it first: pulumi up -s {stack}")
    return outputs


def secret_values(outputs: Mapping[str, Any]) -> list[str]:
    """Every secret string in the outputs (and the password inside database_url), longest first."""
    values: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, str):
            if len(value) >= 6:
                values.add(value)
        elif isinstance(value, Mapping):
            for item in value.values():
                walk(item)
        elif isinstance(value, list | tuple):
            for item in value:
                walk(item)

    for name in SECRET_OUTPUTS:
        walk(outputs.get(name))
    url = outputs.get("database_url")
    if isinstance(url, str):
        password = urlsplit(url).password
        if password:
            values.add(password)
    return sorted(values, key=len, reverse=True)


def mask(text: str, secrets: Iterable[str]) -> str:
    for value in secrets:
        text = text.replace(value, MASK)
    return text


_XML_ATTRIBUTE = {'"': "&quot;", "'": "&apos;", "\n": "&#10;", "\r": "&#13;", "\t": "&#09;"}


def encoded_forms(secrets: Iterable[str]) -> list[str]:
    """Each secret as it can appear inside a report file, longest first: as is, escaped in a JSON
    string or a Python repr (an assertion message), and each of those escaped in XML text or an XML
    attribute (pytest's JUnit XML)."""
    forms: set[str] = set()
    for value in secrets:
        for base in (
            value,
            json.dumps(value)[1:-1],
            json.dumps(value, ensure_ascii=False)[1:-1],
            repr(value)[1:-1],
        ):
            forms.update((base, xml_escape(base), xml_escape(base, _XML_ATTRIBUTE)))
    return sorted((form for form in forms if form), key=len, reverse=True)


def mask_file(path: Path, secrets: Iterable[str]) -> bool:
    """Mask every secret in a report file, rewriting it atomically (same directory, same mode) when
    anything changed. Returns whether it did."""
    raw = path.read_bytes()
    text = raw.decode("utf-8", errors="surrogateescape")
    masked = mask(text, encoded_forms(secrets))
    if masked == text:
        return False
    mode = stat.S_IMODE(path.stat().st_mode)
    fd, aside = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".masking")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(masked.encode("utf-8", errors="surrogateescape"))
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(aside, mode)
        os.replace(aside, path)
    except BaseException:
        Path(aside).unlink(missing_ok=True)
        raise
    return True


def mask_reports(paths: Iterable[Path], secrets: Iterable[str]) -> list[Path]:
    """Mask the report files a run wrote (those that exist); returns the ones that held a secret."""
    values = list(secrets)
    return [path for path in paths if path.is_file() and mask_file(path, values)]


def run_report_files(junit: Path, report_dir: Path) -> list[Path]:
    """The files a run writes: its JUnit XML, the call reports of tests/verify/test_call.py and the
    Lynis figures of tests/verify/test_hardening.py."""
    return [junit, *sorted(report_dir.glob("call-*.json")), *sorted(report_dir.glob("lynis-*.json"))]


# --------------------------------------------------------------------------- summary


@dataclass
class HostResult:
    passed: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


_PARAM = re.compile(r"^(?P<test>[^\[]+)(?:\[(?P<params>.*)\])?$")
ALL_HOSTS = "(all)"
"""Host column of checks on a role as a whole (e.g. test_db's primary/replica checks)."""


def summarise(junit_xml: Path, inventory: Mapping[str, Any]) -> dict[tuple[str, str], HostResult]:
    """Results per (role, host) from pytest's JUnit XML.

    A test whose parameters name a host goes under that host. One without a host goes under its
    module's role, if the module is named after a role of the inventory (test_db.py's checks take the
    primary and replicas as fixtures, not one `node` each): (role, "(all)"); otherwise under
    ("stack", "-").
    """
    groups = inventory.get("groups", {})
    role_of = {host["name"]: role for role, hosts in groups.items() for host in hosts or []}
    results: dict[tuple[str, str], HostResult] = {}
    # The XML is the one pytest just wrote in our own reports folder, not untrusted input.
    for case in ET.parse(junit_xml).getroot().iter("testcase"):  # noqa: S314
        match = _PARAM.match(case.get("name", ""))
        assert match is not None
        params = match.group("params") or ""
        host = find_host(params, role_of)
        rest = params.replace(host, "", 1).strip("-") if host != "-" else params
        module = case.get("classname", "").rsplit(".", 1)[-1]
        name = f"{module}::{match.group('test')}" + (f"[{rest}]" if rest else "")
        if host != "-":
            key = (role_of[host], host)
        elif module.removeprefix("test_") in groups:
            key = (module.removeprefix("test_"), ALL_HOSTS)
        else:
            key = ("stack", "-")
        result = results.setdefault(key, HostResult())
        failure = case.find("failure")
        if failure is None:
            failure = case.find("error")
        if failure is not None:
            message = (failure.get("message") or failure.text or "").strip().splitlines()
            result.failed.append((name, message[0][:300] if message else "failed"))
        elif case.find("skipped") is not None:
            result.skipped.append(name)
        else:
            result.passed.append(name)
    return results


def find_host(params: str, role_of: Mapping[str, str]) -> str:
    """The host name inside a pytest parameter id such as `lab-turn-1-udp-3478`, or "-"."""
    for host in sorted(role_of, key=len, reverse=True):
        if re.search(rf"(^|-){re.escape(host)}(-|$)", params):
            return host
    return "-"


def render_summary(
    results: Mapping[tuple[str, str], HostResult],
    elapsed: float,
    calls: Iterable[str] = (),
    lynis: Iterable[str] = (),
) -> str:
    """The summary printed at the end of a run: one line per (role, host) and its failed checks, then
    the `calls` lines (see call_lines), the `lynis` lines (see lynis_lines), then the verdict."""
    lines = ["", "Verification summary", "=" * 20]
    total_failed = 0
    for (role, host), result in sorted(results.items()):
        failed = len(result.failed)
        total_failed += failed
        state = "ok" if not failed else "FAILED"
        lines.append(
            f"{role:<6} {host:<16} {state:<7} {len(result.passed)} passed, {failed} failed"
            + (f", {len(result.skipped)} skipped" if result.skipped else "")
        )
        for name, message in result.failed:
            lines.append(f"    ✗ {name}: {message}")
    call_summary = list(calls)
    if call_summary:
        lines += ["", "Calls", *call_summary]
    lynis_summary = list(lynis)
    if lynis_summary:
        lines += ["", "Lynis (hardening index, warnings, suggestions)", *lynis_summary]
    checks = sum(len(r.passed) + len(r.failed) for r in results.values())
    verdict = "all checks passed" if not total_failed else f"{total_failed} check(s) FAILED"
    hosts = len({h for _, h in results if h not in ("-", ALL_HOSTS)})
    lines.append(f"\n{checks} checks on {hosts} hosts in {elapsed:.1f} s: {verdict}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- calls


def _candidate(candidate: Any) -> str:
    """`relay/udp 10.77.0.84:49629 (TURN udp)` from one side of a candidate pair of a call report."""
    if not isinstance(candidate, Mapping) or not candidate:
        return "?"
    text = f"{candidate.get('type') or '?'}/{candidate.get('protocol') or '?'}"
    if candidate.get("address"):
        text += f" {candidate['address']}" + (f":{candidate['port']}" if candidate.get("port") else "")
    if candidate.get("type") == "relay" and candidate.get("relay_protocol"):
        text += f" (TURN {candidate['relay_protocol']})"
    return text


def _pair(pair: Any) -> str:
    if not isinstance(pair, Mapping) or not (pair.get("local") or pair.get("remote")):
        return "no candidate pair"
    return f"{_candidate(pair.get('local'))} -> {_candidate(pair.get('remote'))}"


def call_lines(calls: Iterable[tuple[str, Mapping[str, Any]]]) -> list[str]:
    """One line per real call, from (SFU node, call report) pairs (the JSON test_call.py keeps): node,
    mode, state, the subscriber's candidate pair (the one that carried the video, local -> remote),
    time to the first video frame and video frames received. Why a call failed is in its check's
    failure line."""
    lines = []
    for node, report in sorted(calls, key=lambda call: (call[0], str(call[1].get("mode", "")))):
        state = "ok" if report.get("passed") else "FAILED"
        first_video = report.get("first_video_ms")
        timing = f"first video {first_video:.0f} ms" if isinstance(first_video, int | float) else "no video"
        mode = str(report.get("mode") or "?")
        lines.append(
            f"{node:<16} {mode:<9} {state:<7} {_pair(report.get('subscriber_pair'))}; "
            f"{timing}; {report.get('video_frames', 0)} video frames"
        )
    return lines


def _json_objects(report_dir: Path, prefix: str, what: str) -> list[tuple[str, dict[str, Any] | str]]:
    """The `<prefix>-*.json` files of a run's report directory, as (stem without the prefix, object);
    a file that cannot be read or is not a JSON object gives a sentence saying so instead."""
    found: list[tuple[str, dict[str, Any] | str]] = []
    for path in sorted(report_dir.glob(f"{prefix}-*.json")):
        stem = path.stem.removeprefix(f"{prefix}-")
        try:
            value = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            found.append((stem, f"unreadable {what} {path.name}: {exc}"))
            continue
        found.append((stem, value if isinstance(value, dict) else f"{what} {path.name} is not a JSON object"))
    return found


def read_call_reports(report_dir: Path) -> list[tuple[str, dict[str, Any]]]:
    """The call reports in a run's report directory, `call-<node>-<mode>.json`, as (node, report).
    A file that is not a JSON object becomes a failed report saying so."""
    calls: list[tuple[str, dict[str, Any]]] = []
    for stem, report in _json_objects(report_dir, "call", "call report"):
        if isinstance(report, str):
            node, _, mode = stem.rpartition("-")
            calls.append((node or stem, {"mode": mode, "passed": False, "error": report}))
            continue
        mode = str(report.get("mode") or "")
        suffix = f"-{mode}"
        node = stem.removesuffix(suffix) if mode and stem.endswith(suffix) else stem.rpartition("-")[0]
        calls.append((node or stem, report))
    return calls


# --------------------------------------------------------------------------- Lynis


def read_lynis_reports(report_dir: Path) -> list[dict[str, Any]]:
    """The Lynis figures of a run (`lynis-<node>.json`, written by tests/verify/test_hardening.py), by
    node. A file that is not a JSON object becomes a figure without an index, saying so."""
    figures: list[dict[str, Any]] = []
    for node, figure in _json_objects(report_dir, "lynis", "Lynis report"):
        if isinstance(figure, str):
            figure = {"node": node, "hardening_index": None, "error": figure}
        figures.append({"node": node, **figure})
    return figures


def lynis_lines(figures: Iterable[Mapping[str, Any]]) -> list[str]:
    """One line per node: hardening index against its minimum, each warning (explained or not, with the
    number of packages pending for PKGS-7392), the number of suggestions, Lynis' run time."""
    lines = []
    for figure in sorted(figures, key=lambda f: str(f.get("node", ""))):
        index, minimum = figure.get("hardening_index"), figure.get("minimum")
        if not isinstance(index, int):
            problem = figure.get("error") or "Lynis did not finish"
            lines.append(f"{figure.get('node', '?'):<16} no index: {problem}")
            continue
        verdict = "" if not isinstance(minimum, int) else (
            f" (>= {minimum}: {'met' if index >= minimum else 'MISSED'})"
        )
        warnings = []
        for warning in figure.get("warnings") or []:
            test = str(warning.get("test", "?"))
            if test == "PKGS-7392" and figure.get("vulnerable_packages"):
                test += f" ({len(figure['vulnerable_packages'])} packages with a pending security update)"
            warnings.append(test + (", explained" if warning.get("explained") else ", UNEXPLAINED"))
        seconds = figure.get("seconds")
        lines.append(
            f"{figure.get('node', '?'):<16} {figure.get('role', '')!s:<10} index {index}{verdict}; "
            f"warnings: {'; '.join(warnings) or 'none'}; {len(figure.get('suggestions') or [])} suggestions"
            + (f"; {seconds} s" if isinstance(seconds, int | float) else "")
        )
    return lines


# --------------------------------------------------------------------------- running


def run_suite(
    stack: str,
    outputs: Mapping[str, Any],
    *,
    select: str | None,
    junit: Path,
    workers: int,
    report_dir: Path,
    extra_args: list[str] | None = None,
    hardening: bool = False,
) -> tuple[int, float]:
    """Run pytest on tests/verify; stream its output with secrets masked. Returns (rc, seconds)."""
    secrets = secret_values(outputs)
    workdir = Path(tempfile.mkdtemp(prefix="visio-verify-"))
    os.chmod(workdir, 0o700)
    try:
        outputs_file = workdir / "outputs.json"
        fd = os.open(outputs_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(outputs, handle)
        env = dict(os.environ)
        env.update(
            {
                "VISIO_STACK": stack,
                "VISIO_VERIFY_OUTPUTS": str(outputs_file),
                "VISIO_VERIFY_WORKDIR": str(workdir),
                "VISIO_VERIFY_REPORT_DIR": str(report_dir),
                "PYTHONUNBUFFERED": "1",
                "VISIO_VERIFY_HARDENING": "1" if hardening else "0",
            }
        )
        command = [
            sys.executable,
            "-m",
            "pytest",
            str(SUITE),
            "-p",
            "no:cacheprovider",
            "-o",
            "addopts=",
            "--tb=short",
            "-rfE",
            f"--junitxml={junit}",
            "-o",
            "junit_family=xunit1",
        ]
        if workers > 1:
            command += ["-n", str(workers), "--dist", "load"]
        if select:
            command += ["-k", select]
        command += extra_args or []
        started = time.monotonic()
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        assert process.stdout is not None
        for line in process.stdout:
            sys.stdout.write(mask(line, secrets))
        rc = process.wait()
        return rc, time.monotonic() - started
    finally:
        # Close the SSH control masters before removing their sockets.
        for socket_path in workdir.glob("cm-*"):
            subprocess.run(
                ["ssh", "-o", f"ControlPath={socket_path}", "-O", "exit", "visio-verify"],
                capture_output=True,
                timeout=10,
                check=False,
            )
        shutil.rmtree(workdir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="visio verify", description=__doc__.splitlines()[0])
    parser.add_argument("stack", help="stack name (stacks/Pulumi.<stack>.yaml), e.g. lab")
    parser.add_argument("-k", dest="select", help="only checks matching this pytest -k expression")
    parser.add_argument("--junit", type=Path, help="JUnit XML path (default reports/verify-<stack>.xml)")
    parser.add_argument("-n", "--workers", type=int, default=6, help="parallel pytest workers (default 6)")
    parser.add_argument(
        "--hardening", action="store_true",
        help="also scan every TLS listener with testssl.sh (about 20 s per listener) and audit every node "
        "with Lynis (25-55 s per node)",
    )
    parser.add_argument(
        "--outputs-file", type=Path, help="stack outputs JSON instead of asking pulumi (must be mode 0600)"
    )
    args = parser.parse_args(argv)

    try:
        if args.outputs_file:
            if args.outputs_file.stat().st_mode & 0o077:
                raise VerifyError(f"{args.outputs_file} holds secrets: chmod 600 it first")
            outputs = json.loads(args.outputs_file.read_text(encoding="utf-8"))
        else:
            outputs = fetch_outputs(args.stack)
    except (VerifyError, OSError, json.JSONDecodeError) as exc:
        print(f"visio verify: {exc}", file=sys.stderr)
        return 2

    stamp = time.strftime("%Y%m%d-%H%M%S")
    report_dir = REPORTS / f"verify-{args.stack}-{stamp}"
    report_dir.mkdir(parents=True, exist_ok=True)
    junit = args.junit or REPORTS / f"verify-{args.stack}.xml"
    junit.parent.mkdir(parents=True, exist_ok=True)
    secrets = secret_values(outputs)
    try:
        rc, elapsed = run_suite(
            args.stack, outputs, select=args.select, junit=junit, workers=args.workers, report_dir=report_dir,
            hardening=args.hardening,
        )
    finally:
        # Assertion messages and captured output may quote a secret: mask the files the run wrote
        # before anything reads them, even when the run was interrupted.
        mask_reports(run_report_files(junit, report_dir), secrets)
    if junit.exists():
        # Built from the files masked above only, so the summary needs no masking of its own.
        results = summarise(junit, outputs["inventory"])
        lynis = read_lynis_reports(report_dir)
        print(render_summary(results, elapsed, call_lines(read_call_reports(report_dir)), lynis_lines(lynis)))
        summary = {
            "stack": args.stack,
            "seconds": round(elapsed, 1),
            "rc": rc,
            "hosts": {
                f"{role}/{host}": {"passed": len(r.passed), "failed": [n for n, _ in r.failed]}
                for (role, host), r in results.items()
            },
            "lynis": {
                str(f["node"]): {
                    "hardening_index": f.get("hardening_index"),
                    "warnings": [w.get("test") for w in f.get("warnings") or []],
                    "suggestions": len(f.get("suggestions") or []),
                }
                for f in lynis
            },
        }
        (report_dir / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
        print(f"JUnit XML: {junit}; call reports and summary: {report_dir}")
    else:
        print(f"visio verify: pytest wrote no report (exit {rc})", file=sys.stderr)
    if rc == 5:
        print("visio verify: no check matched the selection", file=sys.stderr)
    return rc if rc else 0


if __name__ == "__main__":
    sys.exit(main())
