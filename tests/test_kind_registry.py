"""Every registered check kind is complete (issue 9): its schema is in ``opsgate schema``, it
has a row in the README's table of kinds, a configured item of it is collected by ``pytest
checks/daily`` as ``test_<kind>[<name>]``, and a test marked ``@pytest.mark.negative("<kind>")``
exists (its target broken in one way, the failure naming the cause). A kind module that lacks
a part fails at import, naming it. Adding a kind: its module, its name in
``opsgate.kinds.MODULES``, its README row, its tests (one marked negative) and an item in
``MINIMAL`` below."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap

import pytest

from opsgate import kinds
from opsgate.kinds import REGISTRY, Kind, KindError
from opsgate.schema import CheckItem
from tests.gate_helpers import REPO
from tests.support.project import make_project, run_pytest

# one valid item per kind, as small as it can be (collected only, never probed)
MINIMAL = {
    "http": {"url": "http://127.0.0.1:1/health"},
    "tcp": {"port": 1},
    "process": {"process_name": "no-such-process"},
    "host": {},
    "log": {"path": "missing.log", "patterns": [{"regex": "ERROR"}]},
    "command": {"argv": ["true"]},
    "file": {"path": "/etc/hostname"},
    "postgres": {"dsn": "postgresql://127.0.0.1:1/app"},
    "redis": {"url": "redis://127.0.0.1:1/0"},
    "prometheus": {"url": "http://127.0.0.1:1", "targets_up": True},
    "metrics": {"url": "http://127.0.0.1:1/metrics", "metric": "up"},
    "container": {"container": "app"},
    "backup": {"source": "files", "path": "backups/*.tar.gz", "cadence": ["daily"]},  # weekly by default
    "drill": {"restore": [{"copy": "app"}], "verify": [{"command": {"argv": ["true"]}}],
              "cadence": ["daily"]},  # quarterly by default
    "dns": {"host": "localhost"},
    "systemd": {"unit": "app"},
    "packages": {"requirements": ["pytest>=8"]},
    "series": {"path": "metrics.jsonl", "field": "cpu_percent", "last_samples": 100},
    "reachable": {},
}


def test_every_kind_has_a_minimal_item_here():
    missing = [name for name in REGISTRY if name not in MINIMAL]
    assert not missing, f"add a minimal item of {missing} to MINIMAL in {__file__}"


def test_every_kind_is_in_opsgate_schema():
    out = subprocess.run([sys.executable, "-m", "opsgate.cli", "schema"], capture_output=True, text=True, timeout=60,
                         cwd=REPO)
    assert out.returncode == 0, out.stderr
    schema = json.loads(out.stdout)
    for name, kind in REGISTRY.items():
        section = schema["properties"].get(name)
        assert section, f"kind {name!r} is not a section of `opsgate schema`"
        ref = section["items"]["$ref"]
        assert ref == f"#/$defs/{kind.schema.__name__}", (name, section)
        keys = {field.alias or name for name, field in kind.schema.model_fields.items()}  # as a file writes them
        assert keys - {"kind"} <= set(schema["$defs"][kind.schema.__name__]["properties"])
        assert section["description"] == kind.summary


def expected_table() -> str:
    rows = [f"| `{k.name}` | {k.summary} | {'yes' if k.host_level else 'no'} |" for k in REGISTRY.values()]
    return "\n".join(["| Kind | What it checks | Reads this machine |", "|---|---|---|", *rows])


def test_the_readme_table_lists_every_kind_and_only_them():
    readme = (REPO / "README.md").read_text()
    found = re.search(r"^\| Kind \| What it checks \|.*?(?=\n\n|\Z)", readme, re.M | re.S)
    assert found, "README.md has no table of kinds (### Check kinds)"
    assert found.group(0) == expected_table(), "README.md's table of kinds should read:\n" + expected_table()


def test_an_item_of_every_kind_is_collected_by_its_test_id(tmp_path):
    env = {"name": "kinds", **{name: [{"name": f"a-{name}", **MINIMAL[name]}] for name in REGISTRY if name in MINIMAL}}
    project = make_project(tmp_path, json.dumps(env))  # JSON is YAML
    run = run_pytest(project, "--collect-only", "-q")
    ids = {line.rsplit("::", 1)[-1] for line in run.output.splitlines() if "::" in line}
    missing = {f"test_{name}[a-{name}]" for name in REGISTRY} - ids
    assert not missing, run.output


# run in a subprocess: collects the whole suite and reports, per kind, the tests marked negative
_NEGATIVE_TESTS = textwrap.dedent("""
    import json, sys
    import pytest

    class Negative:
        found = {}

        def pytest_collection_modifyitems(self, items):
            for item in items:
                for mark in item.iter_markers("negative"):
                    for kind in mark.args:
                        self.found.setdefault(kind, []).append(item.nodeid)

    plugin = Negative()
    pytest.main(["--collect-only", "-q", "-p", "no:cacheprovider", "--continue-on-collection-errors", "tests"],
                plugins=[plugin])
    print("NEGATIVE " + json.dumps(plugin.found))
""")


def test_every_kind_has_a_negative_test():
    out = subprocess.run([sys.executable, "-c", _NEGATIVE_TESTS], capture_output=True, text=True, timeout=300,
                         cwd=REPO)
    line = next((l for l in out.stdout.splitlines() if l.startswith("NEGATIVE ")), None)
    assert line, out.stdout[-3000:] + out.stderr[-3000:]
    found = json.loads(line[len("NEGATIVE "):])
    unknown = set(found) - set(REGISTRY)
    assert not unknown, f"negative tests marked for kinds that are not registered: {unknown}"
    missing = [name for name in REGISTRY if not found.get(name)]
    assert not missing, (f"no test marked @pytest.mark.negative(kind) for {missing}: mark a test whose target is "
                         "broken in one way and whose failure names the cause")


# --- an incomplete kind fails at import, naming what it lacks --------------------------

class _Schema(CheckItem):
    kind = "sample"


def _observe(item, ctx):  # pragma: no cover - never called
    raise AssertionError


def _limits(item):  # pragma: no cover - never called
    return []


@pytest.mark.parametrize("missing, message", [
    ({"observe": None}, "expected a function observe(item, ctx) -> Observation as observe"),
    ({"limits": None}, "expected a function limits(item) -> list[Condition] as limits"),
    ({"schema": None}, "expected schema to be a CheckItem subclass"),
    ({"schema": dict}, "expected schema to be a CheckItem subclass"),
    ({"name": "other"}, "its schema _Schema says kind 'sample'"),
    ({"summary": ""}, "expected a one-line summary"),
    ({"secret_fields": ("password",)}, "expected secret_fields to be a tuple of its schema's fields"),
])
def test_an_incomplete_kind_is_refused_naming_what_is_missing(missing, message):
    parts = dict(name="sample", schema=_Schema, observe=_observe, limits=_limits, summary="a sample")
    with pytest.raises(KindError) as raised:
        Kind(**{**parts, **missing})
    assert message in str(raised.value) and "check kind" in str(raised.value)


def test_a_kind_module_without_its_parts_fails_at_import(tmp_path, monkeypatch):
    """A module with a schema and a probe but no limits: importing it (as the registry does)
    fails, naming limits; a module with no KIND at all is refused by name too."""
    package = tmp_path / "throwaway_kinds"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "nolimits.py").write_text(textwrap.dedent("""
        from typing import ClassVar
        from opsgate.kinds import Kind
        from opsgate.schema import CheckItem

        class NoLimitsCheck(CheckItem):
            kind: ClassVar[str] = "nolimits"

        def observe(item, ctx):
            raise NotImplementedError

        KIND = Kind(name="nolimits", schema=NoLimitsCheck, observe=observe, limits=None, summary="half a kind")
    """))
    (package / "nokind.py").write_text("def observe(item, ctx):\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(KindError, match=r"check kind 'nolimits': expected a function limits\(item\)"):
        kinds.load("throwaway_kinds.nolimits")
    with pytest.raises(KindError, match=r"throwaway_kinds.nokind: expected KIND = Kind\(name=..., schema=..."):
        kinds.load("throwaway_kinds.nokind")


def test_an_unknown_kind_is_named_with_the_known_ones():
    with pytest.raises(KeyError, match="no check kind 'htp'; the kinds are: http, tcp"):
        kinds.get("htp")


def test_every_kind_module_ends_with_its_kind_and_names_it_once():
    assert len(kinds.MODULES) == len(set(kinds.MODULES)) == len(REGISTRY)
    for module_name, kind in zip(kinds.MODULES, REGISTRY.values()):
        assert kinds.load(module_name) is kind and kind.schema.kind == kind.name
