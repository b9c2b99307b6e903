"""Structure of the Grafana dashboards and provisioning files (Grafana cannot run here).

What breaks a provisioned dashboard silently: a datasource uid nobody provisions, a `$var`
no variable defines (Grafana leaves it in the SQL), a panel without targets, duplicate panel
ids, overlapping or out-of-grid panels, a PromQL metric or label no process exports, value
mappings out of step with the alert rules. Every SQL query is executed against the real
databases in tests/integration/test_dashboards.py.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from stackwatch.alerts import KIND_TITLES, RULE_TITLES
from stackwatch.models import Rule
from stackwatch.notify.render import dashboard_url
from tests.python_source import parse_files

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD_DIR = ROOT / "dashboards" / "json"
PROVISIONING = ROOT / "dashboards" / "provisioning"
SCHEMA_VERSION = 39  # Grafana 11.3 (grafana/grafana:11.3.1 in docker-compose.yml)
GRID_COLUMNS = 24

FILES = sorted(DASHBOARD_DIR.rglob("*.json"))
DASHBOARDS: dict[Path, dict[str, Any]] = {p: json.loads(p.read_text("utf-8")) for p in FILES}
BY_UID = {d["uid"]: d for d in DASHBOARDS.values()}

#: Variables Grafana itself provides (frontend) and the PostgreSQL macros (backend).
BUILTIN_VARIABLES = frozenset(
    {
        "__interval",
        "__interval_ms",
        "__rate_interval",
        "__range",
        "__range_s",
        "__range_ms",
        "__from",
        "__to",
        "__dashboard",
        "__org",
        "__user",
        "__timezone",
        "__all",
        "__value",
        "__name",
        "__field",
        "__series",
        "__data",
        "__url_time_range",
        "__timeFilter",
        "__timeFrom",
        "__timeTo",
        "__timeGroup",
        "__timeGroupAlias",
    }
)
_VAR_RE = re.compile(r"\$\{(\w+)(?:[.:][^}]*)?\}|\$(\w+)|\[\[(\w+)")


def _datasources() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for path in sorted((PROVISIONING / "datasources").glob("*.y*ml")):
        for ds in yaml.safe_load(path.read_text("utf-8"))["datasources"]:
            assert ds["uid"] not in found, f"datasource uid {ds['uid']} provisioned twice"
            found[ds["uid"]] = ds
    return found


DATASOURCES = _datasources()


def _panels(dash: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dash["panels"]:
        yield panel
        yield from panel.get("panels", [])  # collapsed rows keep their panels inside


def _datasource_refs(dash: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    for panel in _panels(dash):
        if "datasource" in panel:
            yield f"panel {panel['id']}", panel["datasource"]
        for target in panel.get("targets", []):
            if "datasource" in target:
                yield f"panel {panel['id']} target {target['refId']}", target["datasource"]
    for var in dash["templating"]["list"]:
        if "datasource" in var:
            yield f"variable {var['name']}", var["datasource"]
    for anno in dash["annotations"]["list"]:
        yield f"annotation {anno['name']}", anno["datasource"]


def _queries(dash: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(where, text) of every query and every templated string Grafana interpolates."""
    for panel in _panels(dash):
        yield f"panel {panel['id']} title", panel.get("title", "")
        for target in panel.get("targets", []):
            for key in ("rawSql", "expr", "legendFormat"):
                if key in target:
                    yield f"panel {panel['id']} {target['refId']} {key}", target[key]
        for override in panel.get("fieldConfig", {}).get("overrides", []):
            for prop in override["properties"]:
                if prop["id"] == "links":
                    for link in prop["value"]:
                        yield f"panel {panel['id']} link", link["url"]
    for var in dash["templating"]["list"]:
        query = var.get("query", "")
        yield f"variable {var['name']}", query["query"] if isinstance(query, dict) else query
    for anno in dash["annotations"]["list"]:
        if "target" in anno:
            yield f"annotation {anno['name']}", anno["target"]["rawSql"]


def _uses(text: str) -> set[str]:
    names = set()
    for m in _VAR_RE.finditer(text):
        assert not m.group(3), f"deprecated [[{m.group(3)}]] syntax"
        names.add(m.group(1) or m.group(2))
    return names


dash_params = pytest.mark.parametrize(
    "dash", list(DASHBOARDS.values()), ids=[str(p.relative_to(DASHBOARD_DIR)) for p in FILES]
)


def test_the_five_dashboards_exist_with_unique_uids() -> None:
    uids = [d["uid"] for d in DASHBOARDS.values()]
    assert len(uids) == len(set(uids))
    assert set(uids) == {
        "stackwatch-overview",
        "stackwatch-stack",
        "stackwatch-alerts",
        "stackwatch-compliance",
        "stackwatch-pipeline",
    }
    titles = [d["title"] for d in DASHBOARDS.values()]
    assert len(titles) == len(set(titles))
    # folders come from the file tree (foldersFromFilesStructure): one level, no loose files
    assert {p.parent.name for p in FILES} == {"Emissions", "Operations"}
    assert all(p.parent.parent == DASHBOARD_DIR for p in FILES)


@dash_params
def test_schema_version_and_time_settings(dash: dict[str, Any]) -> None:
    assert dash["schemaVersion"] == SCHEMA_VERSION
    assert "id" not in dash or dash["id"] is None  # provisioning assigns ids
    assert dash["time"]["to"] == "now"
    assert re.fullmatch(r"\d+[smhd]", dash["refresh"])
    assert "stackwatch" in dash["tags"]


def test_provisioned_datasources() -> None:
    pg, prom = DATASOURCES["stackwatch-pg"], DATASOURCES["stackwatch-prom"]
    assert pg["type"] == "grafana-postgresql-datasource"
    # the read-only reader login (migration 0011), never the owner / bootstrap superuser
    assert pg["url"] == "timescaledb:5432" and pg["user"] == "${DB_READER_USER}"
    assert pg["jsonData"]["database"] == "stackwatch"
    assert pg["jsonData"]["timescaledb"] is True
    assert pg["jsonData"]["sslmode"] == "disable"
    assert isinstance(pg["jsonData"]["postgresVersion"], int)
    # the secret comes from the container environment, never from the file
    assert pg["secureJsonData"]["password"] == "${DB_READER_PASSWORD}"
    assert prom["type"] == "prometheus" and prom["url"] == "http://prometheus:9090"
    assert sum(ds.get("isDefault", False) for ds in DATASOURCES.values()) == 1


def test_dashboard_provider_matches_the_compose_mounts() -> None:
    [provider] = yaml.safe_load(
        (PROVISIONING / "dashboards" / "stackwatch.yaml").read_text("utf-8")
    )["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["foldersFromFilesStructure"] is True
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text("utf-8"))
    mounts = {v.split(":")[0]: v.split(":")[1] for v in compose["services"]["grafana"]["volumes"]}
    assert mounts["./dashboards/provisioning"] == "/etc/grafana/provisioning"
    assert mounts["./dashboards/json"] == provider["options"]["path"]
    env = compose["services"]["grafana"]["environment"]
    assert {"DB_READER_USER", "DB_READER_PASSWORD"} <= set(env)  # what the datasource reads
    assert "POSTGRES_PASSWORD" not in env  # Grafana never holds the superuser's password


@dash_params
def test_datasources_are_referenced_by_provisioned_uid(dash: dict[str, Any]) -> None:
    for where, ref in _datasource_refs(dash):
        assert isinstance(ref, dict), f"{where}: datasource by name, not by uid: {ref!r}"
        if ref.get("uid") == "-- Grafana --":
            assert ref.get("type") == "grafana", where  # the built-in annotation source
            continue
        assert ref.get("uid") in DATASOURCES, f"{where}: unknown datasource uid {ref}"
        assert ref.get("type") == DATASOURCES[ref["uid"]]["type"], f"{where}: type mismatch"


@dash_params
def test_every_variable_used_is_defined_before_use(dash: dict[str, Any]) -> None:
    names = [v["name"] for v in dash["templating"]["list"]]
    assert len(names) == len(set(names)), "duplicate variable names"
    defined = set(names) | BUILTIN_VARIABLES
    for where, text in _queries(dash):
        unknown = _uses(text) - defined
        assert not unknown, f"{where}: undefined variables {sorted(unknown)}"
    # a chained variable query may only use variables defined above it
    seen: set[str] = set()
    for var in dash["templating"]["list"]:
        query = var.get("query", "")
        text = query["query"] if isinstance(query, dict) else query
        later = _uses(text) - seen - BUILTIN_VARIABLES
        assert not later, f"variable {var['name']} uses {sorted(later)} defined after it"
        seen.add(var["name"])


@dash_params
def test_panels_have_targets_unique_ids_and_sane_grid(dash: dict[str, Any]) -> None:
    panels = list(_panels(dash))
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), f"duplicate panel ids {ids}"
    occupied: dict[tuple[int, int], int] = {}
    for p in panels:
        g = p["gridPos"]
        assert g["x"] >= 0 and g["y"] >= 0 and g["w"] >= 1 and g["h"] >= 1, p["title"]
        assert g["x"] + g["w"] <= GRID_COLUMNS, f"panel {p['id']} leaves the 24-column grid"
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in occupied, f"panels {occupied[(x, y)]} and {p['id']} overlap"
                occupied[(x, y)] = p["id"]
        assert p["title"].strip(), f"panel {p['id']} has no title"
        if p["type"] == "row":
            continue
        targets = p.get("targets", [])
        assert targets, f"panel {p['id']} ({p['title']}) has no targets"
        refs = [t["refId"] for t in targets]
        assert len(refs) == len(set(refs)), f"panel {p['id']}: duplicate refIds"
        for t in targets:
            uid = t.get("datasource", p.get("datasource"))["uid"]
            if uid == "stackwatch-pg":
                assert t["rawQuery"] is True and t["rawSql"].strip(), p["title"]
                assert t["format"] in ("table", "time_series"), p["title"]
                if p["type"] == "timeseries":
                    assert t["format"] == "time_series", p["title"]
            else:
                assert t["expr"].strip(), p["title"]
        if p.get("repeat"):
            assert p["repeat"] in {v["name"] for v in dash["templating"]["list"]}


@dash_params
def test_labels_are_bilingual(dash: dict[str, Any]) -> None:
    def bilingual(text: str) -> bool:
        return bool(re.search(r"[\u4e00-\u9fff]", text)) and bool(re.search(r"[A-Za-z]", text))

    assert bilingual(dash["title"])
    for p in _panels(dash):
        assert bilingual(p["title"]), f"panel title not 中文/English: {p['title']!r}"
    for var in dash["templating"]["list"]:
        assert bilingual(var["label"]), var["name"]


def _value_mappings(dash: dict[str, Any], field_name_part: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for p in _panels(dash):
        for o in p.get("fieldConfig", {}).get("overrides", []):
            if field_name_part in o["matcher"]["options"]:
                for prop in o["properties"]:
                    if prop["id"] == "mappings":
                        found.extend(m["options"] for m in prop["value"])
    return found


def test_rule_titles_follow_the_alert_rules() -> None:
    """The 规则 rule columns show the titles the notifications use (stackwatch.alerts)."""
    expected = {rule.value: f"{zh} {en}" for rule, (zh, en) in RULE_TITLES.items()}
    assert set(expected) == {r.value for r in Rule}
    mappings = [
        m
        for uid in ("stackwatch-alerts", "stackwatch-stack")
        for m in _value_mappings(BY_UID[uid], "规则 rule")
    ]
    assert mappings
    for mapping in mappings:
        assert {k: v["text"] for k, v in mapping.items()} == expected
    # the annotation text spells the same titles
    anno = next(
        a for a in BY_UID["stackwatch-stack"]["annotations"]["list"] if a["name"] == "告警 Alerts"
    )
    for rule, title in expected.items():
        assert f"WHEN '{rule}' THEN '{title}'" in anno["target"]["rawSql"]
    # ... and, for a limit rule, the title of the deciding limit's kind first (超标 only for
    # the legal standard, 超过超低排放限值 for an ultra-low target; issue 13)
    for (rule_, kind), (zh, en) in KIND_TITLES.items():
        assert f"WHEN '{rule_.value}:{kind}' THEN '{zh} {en}'" in anno["target"]["rawSql"]
    generic = {RULE_TITLES[r][0] for r in
               (Rule.HOUR_EXCEEDANCE, Rule.DAY_EXCEEDANCE, Rule.PROVISIONAL_EXCEEDANCE)}
    assert not [t for t in generic if "超标" in t], generic


def test_flag_mappings_cover_hj212_table_8() -> None:
    # HJ 212-2017 Table 8: N normal, F stopped, M maintenance, S manual, D fault,
    # C calibrating, T over upper limit, B communication fault
    for uid in ("stackwatch-overview", "stackwatch-stack"):
        [mapping, *rest] = _value_mappings(BY_UID[uid], "标记 flag")
        assert set(mapping) == set("NFMSDCTB")
        assert all(m == mapping for m in rest)


def test_overview_state_colours() -> None:
    [mapping] = _value_mappings(BY_UID["stackwatch-overview"], "状态 state")
    assert set(mapping) == {"normal", "warning", "alarm", "offline", "calibration"}
    assert mapping["normal"]["color"] == "green" and mapping["alarm"]["color"] == "red"


def test_notification_links_open_the_stack_dashboard() -> None:
    """The alert e-mail/webhook link (stackwatch.notify.render) lands on a stack."""
    url = urlsplit(dashboard_url("http://grafana.example:3000", "ay-sinter-1"))
    _, d, uid, slug = url.path.split("/")
    assert (d, uid, slug) == ("d", "stackwatch-stack", "stack-detail")
    dash = BY_UID[uid]
    assert dash["title"].lower().startswith("stack detail")
    [stack_var] = [v for v in dash["templating"]["list"] if v["name"] == "stack"]
    assert parse_qs(url.query) == {"var-stack": ["ay-sinter-1"]}
    # with the alert's range: Grafana's absolute from/to in epoch ms. 2025-06-01T00:00Z =
    # (55 years × 365 + 14 leap days + 151 days Jan–May) × 86 400 s = 1 748 736 000 s
    ranged = urlsplit(dashboard_url(
        "http://grafana.example:3000", "ay-sinter-1",
        datetime(2025, 6, 1, tzinfo=UTC), datetime(2025, 6, 1, 7, tzinfo=UTC),
    ))
    assert parse_qs(ranged.query) == {
        "var-stack": ["ay-sinter-1"], "from": ["1748736000000"], "to": ["1748761200000"]
    }
    # …where the alerts of the stack are annotations
    alerts = [a for a in dash["annotations"]["list"] if a["name"] == "告警 Alerts"]
    assert alerts and alerts[0]["enable"] and not alerts[0]["hide"]
    assert "FROM alerts" in alerts[0]["target"]["rawSql"]
    assert "${stack:sqlstring}" in alerts[0]["target"]["rawSql"]
    # one stack at a time; its panels quote the value themselves
    assert not stack_var["multi"] and not stack_var["includeAll"]
    for p in _panels(dash):
        for t in p.get("targets", []):
            assert "$stack" not in t["rawSql"] or "'$stack'" in t["rawSql"], p["title"]
    links = [
        link["url"]
        for d in DASHBOARDS.values()
        for p in _panels(d)
        for o in p.get("fieldConfig", {}).get("overrides", [])
        for prop in o["properties"]
        if prop["id"] == "links"
        for link in prop["value"]
    ]
    assert links and all(u.startswith("/d/stackwatch-stack/stack-detail?var-stack=") for u in links)


# ------------------------------------------------------------------- Prometheus metrics

_METRIC_CLASSES = {
    "Counter": "counter",
    "Gauge": "gauge",
    "Histogram": "histogram",
    "Summary": "summary",
    "CounterMetricFamily": "counter",
    "GaugeMetricFamily": "gauge",
    "HistogramMetricFamily": "histogram",
    "SummaryMetricFamily": "summary",
}


def _defined_metrics() -> dict[str, tuple[str, frozenset[str]]]:
    """name → (kind, label names) of every metric constructed in the project's code."""
    found: dict[str, tuple[str, frozenset[str]]] = {}
    paths = [p for pkg in ("stackwatch", "streams", "sinks", "simulators")
             for p in (ROOT / pkg).rglob("*.py")]
    for tree in parse_files(paths).values():
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            cls = (
                func.id
                if isinstance(func, ast.Name)
                else (func.attr if isinstance(func, ast.Attribute) else "")
            )
            if cls not in _METRIC_CLASSES or not node.args:
                continue
            name = node.args[0]
            if not (isinstance(name, ast.Constant) and isinstance(name.value, str)):
                continue
            labels: frozenset[str] = frozenset()
            label_arg = (
                node.args[2]
                if len(node.args) > 2
                else next(
                    (k.value for k in node.keywords if k.arg in ("labelnames", "labels")), None
                )
            )
            if isinstance(label_arg, ast.List | ast.Tuple):
                labels = frozenset(
                    e.value
                    for e in label_arg.elts
                    if isinstance(e, ast.Constant) and isinstance(e.value, str)
                )
            found[name.value] = (_METRIC_CLASSES[cls], labels)
    return found


def _exposed(defined: dict[str, tuple[str, frozenset[str]]]) -> dict[str, frozenset[str]]:
    """Sample names Prometheus scrapes (client_python naming) → labels they carry."""
    exposed: dict[str, frozenset[str]] = {}
    for name, (kind, labels) in defined.items():
        if kind == "counter":
            base = name.removesuffix("_total")
            exposed[base + "_total"] = labels
            exposed[base + "_created"] = labels
        elif kind == "histogram":
            exposed[name + "_bucket"] = labels | {"le"}
            exposed[name + "_sum"] = labels
            exposed[name + "_count"] = labels
        elif kind == "summary":
            exposed[name] = labels | {"quantile"}
            exposed[name + "_sum"] = labels
            exposed[name + "_count"] = labels
        else:
            exposed[name] = labels
    return exposed


#: Labels Prometheus attaches to every scraped sample (target labels).
TARGET_LABELS = frozenset({"instance", "job"})


def _prom_exprs() -> Iterator[tuple[str, str]]:
    for dash in DASHBOARDS.values():
        for p in _panels(dash):
            for t in p.get("targets", []):
                if "expr" in t:
                    yield f"{dash['uid']} panel {p['id']} {t['refId']}", t["expr"]


def test_promql_uses_metrics_and_labels_the_code_exports() -> None:
    exposed = _exposed(_defined_metrics())
    assert "stackwatch_gateway_frames_total" in exposed  # the parser finds the definitions
    exprs = list(_prom_exprs())
    assert len(exprs) >= 10
    for where, expr in exprs:
        assert expr.count("(") == expr.count(")") and expr.count("{") == expr.count("}"), where
        metrics = set(re.findall(r"\bstackwatch_\w+", expr))
        assert metrics or "up{" in expr, f"{where}: no stackwatch metric in {expr}"
        undefined = {m for m in metrics if m not in exposed}
        assert not undefined, f"{where}: metrics no code defines: {sorted(undefined)}"
        available = (
            TARGET_LABELS.union(*(exposed[m] for m in metrics)) if metrics else (TARGET_LABELS)
        )
        used = set(re.findall(r"(?:by|without)\s*\(([^)]*)\)", expr))
        used_labels = {x.strip() for group in used for x in group.split(",") if x.strip()}
        used_labels |= set(re.findall(r"(\w+)\s*=~?\s*\"", expr))
        unknown = used_labels - available
        assert not unknown, f"{where}: labels {sorted(unknown)} not on {sorted(metrics)}"


def test_pipeline_dashboard_covers_the_operational_questions() -> None:
    exprs = " ".join(e for _, e in _prom_exprs())
    for metric in (
        "stackwatch_gateway_frames_total",  # frames/s and rejects by reason
        "stackwatch_sink_consumer_lag",  # lag
        "stackwatch_process_seconds_bucket",  # latency
        "stackwatch_sink_write_seconds_bucket",
        "stackwatch_dead_letters_total",
        "stackwatch_notifications_total",  # notifications
    ):
        assert metric in exprs, metric
    sql = " ".join(
        t.get("rawSql", "")
        for p in _panels(BY_UID["stackwatch-pipeline"])
        for t in p.get("targets", [])
    )
    assert "FROM notifications" in sql  # notification delivery (from the delivery log)


def test_factor_variable_lists_every_pollutant_the_limit_catalogue_knows() -> None:
    """The factor variable probes a list of pollutant codes (fast for a whole region); a code
    with limits but missing from that list would never be selectable."""
    catalogue = (ROOT / "stackwatch" / "limits" / "catalogue.yaml").read_text("utf-8")
    limited = set(re.findall(r"\ba\d{5}\b", catalogue))
    assert {"a34013", "a21026", "a21002"} <= limited
    for uid in ("stackwatch-overview", "stackwatch-stack", "stackwatch-compliance"):
        [factor] = [v for v in BY_UID[uid]["templating"]["list"] if v["name"] == "factor"]
        listed = set(re.findall(r"\('(a\d{5})', '", factor["query"]))
        assert limited <= listed, f"{uid}: factor list lacks {sorted(limited - listed)}"
        # flue-gas parameters are not pollutants: flow, O2, velocity, temperature, pressure…
        assert not listed & {"a00000", "a19001", "a01011", "a01012", "a01013", "a01014"}
