"""The README runs: every ```bash block, in order, as written, against a live server.

How a README block is run (follow this when you add a section):

- Every fenced ```bash block of README.md is run, top to bottom, in ONE bash session (so
  `export`s and background jobs carry over), from a scratch directory holding README.md and
  a link to `.venv` (paths like `.venv/bin/tollhouse` work; no `.env` is read).
- The server is `tollhouse serve` in a subprocess on a fresh TOLLHOUSE_HOME; the CLI in the
  blocks finds the same home. The README's `localhost:8000`, helper port `9000` and the
  Stripe sandbox's `12111` are replaced by free ports, in commands, documented output and
  restart settings alike.
- A block's commands run one at a time; a command that exits non-zero fails the test.
- Documented output is checked: comment lines right after a command that look like output
  (`# {…}`, `# […]`, `# data: {…}`, `# HTTP/…`, or `# …`) must appear in that command's
  output, in that order (other lines may come between). In a JSON line, only what is written
  is compared: the keys shown must be there with those values, others may follow; `…` is a
  wildcard for a value (`"balance":…`), inside a string (`"prj_…"`), for more keys
  (`{…,"caller":…}`) or more items, and before the object (`…{"usage":…}`). A line that is
  only prose after `…` (`# … grounding, timeline …`) stands for any lines.
- An HTML comment on the line right before a block's fence changes how it runs:
    <!-- readme-test: skip (why) -->       not run (cannot run headless, needs an account);
                                          use sparingly, the reason is shown in the README
    <!-- readme-test: restart K=V K=V -->  restart the server with these settings first
                                          (`{llm}` is the scripted OpenAI-compatible LLM's
                                          base URL); they stay for the blocks after it
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from queue import Empty, Queue
from typing import Any

import httpx
import pytest

from cli_support import TOLLHOUSE, cli_env
from llm_peer import LLMPeer
from llm_script import Script
from scene_script import script_scene

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
BASH = shutil.which("bash") or "/bin/bash"
DIRECTIVE = re.compile(r"^<!--\s*readme-test:\s*(?P<verb>skip|restart)\b(?P<rest>.*?)-->\s*$")
OUTPUT_LIKE = re.compile(r"^(\{|\[|…|data: |HTTP/)")
COMMAND_SECONDS = 120
ELLIPSIS = "…"
ANY = "<readme-test:any>"  # a wildcard value, once the pattern is JSON
MORE = "<readme-test:more>"  # "and more keys / items"


# --- reading the README ----------------------------------------------------------------------


@dataclass
class Command:
    text: str
    expected: list[str] = field(default_factory=list)


@dataclass
class Block:
    line: int  # where the fence is, for messages
    commands: list[Command]
    skip: str | None = None
    restart: dict[str, str] | None = None


def _complete(text: str) -> bool:
    """Whether `text` is a whole shell command (bash itself decides)."""
    checked = subprocess.run(  # noqa: S603 - bash reading the README's own text
        [BASH, "-n"], input=text, capture_output=True, text=True, check=False
    )
    return checked.returncode == 0


def parse_commands(lines: list[str]) -> list[Command]:
    commands: list[Command] = []
    pending: list[str] = []
    after_command = False  # the line before was a command or its documented output
    for line in lines:
        stripped = line.strip()
        if not pending and stripped.startswith("#"):
            text = stripped[1:].strip()
            if after_command and OUTPUT_LIKE.match(text):
                commands[-1].expected.append(text)
            else:
                after_command = False
            continue
        if not pending and not stripped:
            after_command = False
            continue
        pending.append(line)
        if not line.endswith("\\") and _complete("\n".join(pending)):
            commands.append(Command("\n".join(pending)))
            pending = []
            after_command = True
    assert not pending, f"an unfinished command: {pending}"
    return commands


def parse_readme(text: str) -> list[Block]:
    lines = text.splitlines()
    blocks: list[Block] = []
    index = 0
    while index < len(lines):
        if lines[index].strip() != "```bash":
            index += 1
            continue
        start = index
        end = lines.index("```", start + 1)
        block = Block(start + 1, parse_commands(lines[start + 1 : end]))
        before = lines[start - 1].strip() if start else ""
        if directive := DIRECTIVE.match(before):
            rest = directive["rest"].strip()
            if directive["verb"] == "skip":
                block.skip = rest.strip("()") or "skipped"
            else:
                block.restart = dict(pair.split("=", 1) for pair in shlex.split(rest))
        blocks.append(block)
        index = end + 1
    return blocks


# --- comparing output with what the README shows --------------------------------------------


def _to_json(pattern: str) -> Any:
    """The README's JSON-with-ellipses as a JSON value with ANY / MORE markers."""
    parts = re.split(r'("(?:[^"\\]|\\.)*")', pattern)
    out = []
    for index, part in enumerate(parts):
        if index % 2:  # a string literal: ellipses inside are globs, kept as they are
            out.append(part)
            continue
        part = re.sub(rf"([{{\[,])\s*{ELLIPSIS}\s*(?=[,}}\]])", rf'\1"{MORE}"', part)
        part = part.replace(ELLIPSIS, f'"{ANY}"')
        out.append(part)
    text = "".join(out)
    # A MORE member in an object: turn `"<more>",` / `,"<more>"` into a key of its own.
    text = re.sub(rf'([{{,])\s*"{MORE}"\s*(?=[,}}])', rf'\1"{MORE}":0', text)
    return json.loads(text)


def matches(pattern: Any, actual: Any) -> bool:
    if pattern == ANY:
        return True
    if isinstance(pattern, str):
        if ELLIPSIS in pattern:
            glob = ".*".join(re.escape(piece) for piece in pattern.split(ELLIPSIS))
            return isinstance(actual, str) and re.fullmatch(glob, actual, re.DOTALL) is not None
        return pattern == actual
    if isinstance(pattern, dict):
        return isinstance(actual, dict) and all(
            key in actual and matches(value, actual[key])
            for key, value in pattern.items()
            if key != MORE
        )
    if isinstance(pattern, list):
        more = bool(pattern) and pattern[-1] == MORE
        items = pattern[:-1] if more else pattern
        if not isinstance(actual, list) or len(actual) < len(items):
            return False
        if not more and len(actual) != len(items):
            return False
        return all(matches(p, a) for p, a in zip(items, actual, strict=False))
    return bool(pattern == actual and type(pattern) is type(actual))


def line_matches(expected: str, line: str) -> bool:
    start = min((i for i in (expected.find("{"), expected.find("[")) if i >= 0), default=-1)
    if start < 0:  # plain text, with ellipses as wildcards
        glob = ".*".join(re.escape(piece) for piece in expected.split(ELLIPSIS))
        return re.fullmatch(glob, line.strip()) is not None
    prefix, pattern = expected[:start], _to_json(expected[start:])
    decoder = json.JSONDecoder()
    for index, char in enumerate(line):
        if char not in "{[":
            continue
        if not (prefix.startswith(ELLIPSIS) or line[:index] == prefix):
            continue
        try:
            value, end = decoder.raw_decode(line, index)
        except json.JSONDecodeError:
            continue
        if not line[end:].strip() and matches(pattern, value):
            return True
    return False


def check_output(expected: list[str], output: str) -> str | None:
    """None when every expected line is found in order, else what was not."""
    lines = output.splitlines()
    position = 0
    for wanted in expected:
        if wanted.startswith(ELLIPSIS) and "{" not in wanted and "[" not in wanted:
            continue  # "… anything …": any lines
        while position < len(lines) and not line_matches(wanted, lines[position]):
            position += 1
        if position == len(lines):
            return wanted
        position += 1
    return None


# --- the server and the shell ---------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Server:
    """`tollhouse serve` in a subprocess; restartable with other settings."""

    def __init__(self, home: Path, port: int) -> None:
        self.home, self.port = home, port
        self.process: subprocess.Popen[str] | None = None
        self.log = home.parent / "server.log"

    def start(self, **settings: str) -> None:
        with self.log.open("a") as log:
            self.process = subprocess.Popen(  # noqa: S603 - our own executable
                [TOLLHOUSE, "serve", "--port", str(self.port)],
                cwd=self.home.parent,
                env=cli_env(self.home, LOG_LEVEL="WARNING", **settings),
                stdout=log,
                stderr=subprocess.STDOUT,
                text=True,
            )
        deadline = time.monotonic() + 240  # a first start migrates; a shared CI box is slow
        while time.monotonic() < deadline:  # waiting for a process to listen, not a race
            assert self.process.poll() is None, self.log.read_text()
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=1).is_success:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"the server did not start:\n{self.log.read_text()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)


class Shell:
    """One bash for the whole README: each command's output is captured on its own."""

    def __init__(self, cwd: Path, env: dict[str, str]) -> None:
        self.dir = cwd
        self.bash = subprocess.Popen(  # noqa: S603 - the README's commands, on purpose
            [BASH, "--norc", "--noprofile"],
            cwd=cwd,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
        self.lines: Queue[str] = Queue()
        assert self.bash.stdout is not None
        threading.Thread(target=self._read, args=(self.bash.stdout,), daemon=True).start()
        self.count = 0

    def _read(self, stream: Any) -> None:
        for line in stream:
            self.lines.put(line)

    def run(self, command: str) -> tuple[int, str, str]:
        """(exit status, stdout, stderr) of one command, run in the session."""
        self.count += 1
        script = self.dir / f".cmd{self.count}.sh"
        script.write_text(command + "\n")
        out, err = self.dir / f".out{self.count}", self.dir / f".err{self.count}"
        marker = f"__readme_done_{self.count}__"
        assert self.bash.stdin is not None
        self.bash.stdin.write(f'source {script} > {out} 2> {err}; echo "{marker} $?"\n')
        self.bash.stdin.flush()
        deadline = time.monotonic() + COMMAND_SECONDS
        while True:
            try:
                line = self.lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except Empty:
                raise AssertionError(f"timed out after {COMMAND_SECONDS} s: {command}") from None
            if line.startswith(marker):
                return int(line.split()[-1]), out.read_text(), err.read_text()

    def close(self) -> None:
        assert self.bash.stdin is not None
        self.bash.stdin.write("kill $(jobs -p) 2>/dev/null; exit\n")
        self.bash.stdin.flush()
        self.bash.wait(timeout=30)


# --- the test ---------------------------------------------------------------------------------


def test_the_expectation_syntax() -> None:
    """The comparison itself, so a README test that passes means something."""
    assert line_matches('{"user_id":"…","created":true}', '{"user_id":"u1","created":true}')
    assert not line_matches('{"user_id":"…","created":true}', '{"user_id":"u1","created":false}')
    assert line_matches('{…,"caller":{"kind":"system"}}', '{"a":1,"caller":{"kind":"system"}}')
    assert line_matches(
        '{"detail":{"balance":…,"cost":10},…}', '{"detail":{"balance":3,"cost":10}}'
    )
    assert not line_matches('{"b":{"cost":10}}', '{"b":{"cost":11}}')
    assert line_matches(
        'data: {"event":"done","progress":100}', 'data: {"event":"done","progress":100}'
    )
    assert not line_matches('data: {"event":"done"}', 'data: {"event":"start"}')
    assert line_matches('…{"usage":{"count":3,…}}', '{"ok":true,"usage":{"count":3,"limit":3}}')
    assert line_matches('{"id":"prj_…"}', '{"id":"prj_abc"}')
    assert not line_matches('{"id":"prj_…"}', '{"id":"key_abc"}')
    assert line_matches('["a",…]', '["a","b","c"]')
    assert not line_matches('["a"]', '["a","b"]')
    assert check_output(['{"a":1}', "… anything", '{"b":2}'], '{"a":1}\nx\n{"b":2}') is None
    assert check_output(['{"b":2}', '{"a":1}'], '{"a":1}\n{"b":2}') == '{"a":1}'
    commands = parse_commands(
        [
            "curl -s x \\",
            "  -d '{}'",
            '# {"ok":true}',
            "# A note, not output",
            "for i in 1 2; do",
            "  echo $i",
            "done",
            "# 2",
        ]
    )
    assert [(c.text.split()[0], c.expected) for c in commands] == [
        ("curl", ['{"ok":true}']),
        ("for", []),
    ]


def script_the_people(script: Script) -> None:
    """What the scene's people say in the README's walk-through (the scene itself is
    `script_scene`'s): replies shaped like a model's, so the documented output is what a
    reader sees."""
    script.respond(
        "CharacterReply",
        {"response": "The grey plain, and our own shadow on it.", "emotional_tone": "awed"},
    )
    script.respond(
        "SurveyReply",
        {
            "response": "A little, yes; the fuel was nearly gone.",
            "sentiment": "mixed",
            "key_points": ["fuel", "the landing"],
            "emotional_tone": "calm",
        },
    )
    script.respond(
        "text",
        lambda call: (
            "Afraid, and steady all the same."
            if "summarise" in call.system
            else "It felt like the whole world was holding its breath."
        ),
    )


@pytest.fixture
def readme_server(tmp_path: Path, llm_peer: LLMPeer) -> Iterator[tuple[Server, Shell, LLMPeer]]:
    script_scene(llm_peer.script)
    script_the_people(llm_peer.script)
    home = tmp_path / "home"
    work = tmp_path / "work"
    work.mkdir()
    (work / ".venv").symlink_to(ROOT / ".venv")
    (work / "README.md").write_text(README.read_text())
    server = Server(home, free_port())
    shell = Shell(work, {**cli_env(home), "PATH": os.environ["PATH"]})
    try:
        yield server, shell, llm_peer
    finally:
        shell.close()
        server.stop()


@pytest.mark.slow  # a server, generations, ~80 commands: 2-3 minutes
def test_every_readme_block_runs_in_order(readme_server: tuple[Server, Shell, LLMPeer]) -> None:
    server, shell, llm = readme_server
    ports = {"8000": str(server.port), "9000": str(free_port()), "12111": str(free_port())}

    def local(text: str) -> str:
        return re.sub(r"\b(8000|9000|12111)\b", lambda m: ports[m[1]], text)

    settings: dict[str, str] = {}
    server.start()
    ran = 0
    for block in parse_readme(README.read_text()):
        if block.skip:
            continue
        if block.restart is not None:
            settings |= {
                k: local(v.replace("{llm}", llm.openai_base_url)) for k, v in block.restart.items()
            }
            server.stop()
            server.start(**settings)
        for command in block.commands:
            status, out, err = shell.run(local(command.text))
            where = f"README.md block at line {block.line}: {command.text}"
            assert status == 0, f"{where}\nexit {status}\n{out}\n{err}"
            missing = check_output([local(line) for line in command.expected], out)
            assert missing is None, f"{where}\nexpected: {missing}\ngot:\n{out}{err}"
            ran += 1
    assert ran > 40, "the README's walk-through was not found"
