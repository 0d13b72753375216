"""A YAML alias bomb (the classic nine-level "billion laughs", about 500 bytes, 10^9 nodes
once expanded) as an environment file and as a gate policy: refused in <= 1 s with a peak
RSS <= 100 MB, beside loading a normal example environment and the shipped gate policy.

Every load runs in its own child process, which reports its own peak RSS
(``VmHWM`` of /proc/self/status, interpreter and imports included) and the load's wall time
(start-up and imports excluded); the best of a few runs is kept (``--quick``: one run).
The machine may be shared: times are noisy, RSS is not.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BOMB = 'lol: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + "".join(
    f"l{i}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8))
ENVIRON = {"JARVIS_PG_PASSWORD": "pg-bench", "JARVIS_REDIS_PASSWORD": "redis-bench", "UPSTREAM_API_TOKEN": "token-bench",
           "OPENROUTER_API_KEY": "token-bench"}

LOAD = """
import json, resource, sys, time
from opsgate import envfile
from opsgate.gate import PolicyError, load_policy
kind, path, environ = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
started = time.perf_counter()
try:
    envfile.load(path, environ=environ) if kind == "env" else load_policy(path)
    outcome = "loaded"
except (envfile.EnvFileError, PolicyError) as exc:
    outcome = "refused: " + str(exc.problems[0]).replace(path, path.rsplit("/", 1)[-1])
print(json.dumps({"seconds": time.perf_counter() - started, "outcome": outcome,
                  "rss_mb": int(next(l for l in open('/proc/self/status') if l.startswith('VmHWM')).split()[1]) / 1024}))
"""


def _load(kind: str, path: Path, runs: int) -> dict:
    best: dict | None = None
    for _ in range(runs):
        done = subprocess.run([sys.executable, "-c", LOAD, kind, str(path), json.dumps(ENVIRON)], capture_output=True,
                              text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(REPO / "src")})
        if done.returncode != 0:
            raise RuntimeError(f"benchmark child exited {done.returncode}: {done.stderr[-500:]}")
        result = json.loads(done.stdout)
        if best is None or result["seconds"] < best["seconds"]:
            best = result
    return best


def run(quick: bool = False) -> list[dict]:
    runs = 1 if quick else 5
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        env_bomb = Path(folder) / "bomb-env.yaml"
        env_bomb.write_text("name: bomb\n" + BOMB)
        policy_bomb = Path(folder) / "bomb-gates.yaml"
        policy_bomb.write_text("gates: {}\n" + BOMB)
        for case, kind, path, bomb in (
            (f"alias bomb as environment ({len(env_bomb.read_bytes())} B)", "env", env_bomb, True),
            ("normal environment (perfect-jarvis.yaml)", "env", REPO / "config" / "examples" / "perfect-jarvis.yaml", False),
            (f"alias bomb as gate policy ({len(policy_bomb.read_bytes())} B)", "policy", policy_bomb, True),
            ("normal gate policy (config/gates.yaml)", "policy", REPO / "config" / "gates.yaml", False),
        ):
            got = _load(kind, path, runs)
            expected = got["outcome"].startswith("refused") and "too many aliases" in got["outcome"] if bomb \
                else got["outcome"] == "loaded"
            ok = expected and got["rss_mb"] <= 100 and (got["seconds"] <= 1 or not bomb)
            rows.append({"case": case, "measured": f"{got['seconds']:.3f} s, {got['rss_mb']:.0f} MB peak RSS, "
                                                    f"{got['outcome'][:70]}",
                         "goal": "refused <= 1 s, <= 100 MB" if bomb else "loads; reference", "ok": ok})
    return rows


if __name__ == "__main__":
    for row in run(quick="--quick" in sys.argv):
        print(row)
