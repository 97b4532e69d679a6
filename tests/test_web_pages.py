"""Status page units: the pages rendered from contract-shaped verdicts (no judge, no browser).

``testsupport/web/fake_verdicts.py`` builds a known mix: the first 20 of the 34
provinces fully completed, the other 14 with one commune completed, one not
completed (loss criterion), one unknown each. The browser test against a real
collector is ``tests/test_status_page.py``.
"""

from __future__ import annotations

import gzip
import re
import string
import time
from datetime import timedelta

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from commune_collector.web.chart import ChartLabels, Point, _nice_max, burnup_svg
from commune_collector.web.fmt import fold, local_date, number
from commune_collector.web.i18n import LANGS, load_catalog
from commune_collector.web.install import install
from commune_collector.web.routes import PAGE_SIZE
from testsupport.access import grant
from testsupport.web.fake_verdicts import ITEMS, TODAY, FakeVerdicts


def client_for(source: FakeVerdicts | None) -> TestClient:
    app = FastAPI()
    install(app)
    grant(app)  # a national operator: the gate is not part of a bare app
    if source is not None:
        app.state.verdict_source = source
    return TestClient(app)


@pytest.fixture(scope="module")
def client() -> TestClient:
    return client_for(FakeVerdicts(per_province=3))


def cells(html: str, testid: str) -> list[str]:
    return re.findall(rf'data-testid="{testid}">([^<]*)<', html)


def test_national_table_shows_n_of_34_per_item(client):
    html = client.get("/").text
    assert cells(html, "provinces-done") == ["20/34"] * len(ITEMS)
    for slug in ("ha-noi", "an-giang", "ho-chi-minh"):
        assert f'href="/p/{slug}"' in html
    assert "Hà Nội" in html and "Đường truyền chính" in html  # Vietnamese by default
    assert "74/102" in html  # network: 60 + 14 completed communes of 102


def test_language_switch_and_both_catalogs(client):
    vi = client.get("/").text
    en = client.get("/?lang=en").text
    assert 'lang="vi"' in vi and "Tiến độ theo hạng mục" in vi and 'href="/?lang=en"' in vi
    assert 'lang="en"' in en and "Readiness by item" in en and "Primary network link" in en
    assert 'href="/?lang=vi"' in en  # the switch back names the language, so the choice is remembered
    assert 'href="/p/ha-noi?lang=en"' in en  # links keep the chosen language


def test_an_unknown_language_is_a_4xx_naming_the_field(client):
    response = client.get("/?lang=fr")
    assert response.status_code == 422
    assert "lang" in response.text


def test_province_page_lists_failing_reasons_and_filters(client):
    html = client.get("/p/an-giang?lang=en").text
    assert "loss 12.3% over 24h, threshold &lt; 1%" in html
    assert "Insufficient evidence" in html and "Not completed" in html
    # failing first: not completed, then unknown, then completed
    order = re.findall(r'data-site="([^"]+)"', html)
    assert order == ["an-giang-002", "an-giang-003", "an-giang-001"]
    only_bad = client.get("/p/an-giang?state=not_completed").text
    assert re.findall(r'data-site="([^"]+)"', only_bad) == ["an-giang-002"]
    by_item = client.get("/p/an-giang?item=power").text  # only the unknown commune fails power
    assert re.findall(r'data-site="([^"]+)"', by_item) == ["an-giang-003"]


def test_search_ignores_case_and_vietnamese_accents(client):
    html = client.get("/p/an-giang", params={"q": "xa thu 33-2"}).text
    assert re.findall(r'data-site="([^"]+)"', html) == ["an-giang-002"]
    assert fold("Đắk Lắk") == "dak lak"


def test_long_provinces_are_paginated():
    big = client_for(FakeVerdicts(per_province=120))
    first = big.get("/p/an-giang?lang=en").text
    assert len(re.findall(r'data-site="', first)) == PAGE_SIZE
    assert "Showing 1–50 of 120" in first and "Page 1 of 3" in first
    assert 'href="/p/an-giang?page=2&amp;lang=en#communes"' in first
    last = big.get("/p/an-giang?lang=en&page=3").text
    assert len(re.findall(r'data-site="', last)) == 20 and "Showing 101–120 of 120" in last
    assert big.get("/p/an-giang?page=0").status_code == 422


def test_commune_page_shows_every_criterion_with_value_threshold_window_evidence(client):
    html = client.get("/s/an-giang-002?lang=en").text
    rows = re.findall(r'data-criterion="([^"]+)"', html)
    assert rows == ["network.loss", "backup_link.ok", "power.ok", "devices.ok", "online_meeting.ok",
                    "reporting.ok"]
    assert "loss 12.3% over 24h, threshold &lt; 1%" in html
    loss_row = html[html.index('data-criterion="network.loss"'):html.index('data-criterion="backup_link.ok"')]
    assert re.search(r'data-label="Measured">12.3%<', loss_row)
    assert re.search(r'data-label="Threshold">&lt; 1%<', loss_row)
    assert re.search(r'data-label="Window">24h ', loss_row)
    assert re.search(r">\d+(s| min) ago</time>", loss_row)  # evidence 45 s before the verdict
    assert "Not met" in html and "Met" in html
    assert "completed → not completed".lower() in html.lower()  # the regression, with its cause
    assert 'href="/p/an-giang?lang=en"' in html


def test_a_regression_says_what_failed_in_the_readers_language(client):
    """The judge's reasons for a change are data: Vietnamese on the Vietnamese page, English on the English."""
    [vi] = re.findall(r'data-testid="regression-why">([^<]*)<', client.get("/s/an-giang-002?lang=vi").text)
    [en] = re.findall(r'data-testid="regression-why">([^<]*)<', client.get("/s/an-giang-002?lang=en").text)
    assert vi.strip() == "Tiêu chí network.loss: đo được 12,3% trong 24 giờ, ngưỡng &lt; 1%", vi
    assert en.strip() == "loss 12.3% over 24h, threshold &lt; 1%", en
    national = client.get("/?lang=vi").text
    assert "Tiêu chí network.loss: đo được 12,3%" in national[national.index('id="regressions"'):]


def test_unknown_commune_or_province_is_a_404_page(client):
    assert client.get("/s/nowhere-001").status_code == 404
    response = client.get("/p/atlantis?lang=en")
    assert response.status_code == 404 and "No province “atlantis”" in response.text


def test_no_judge_or_no_pass_yet_is_a_503_not_a_crash():
    assert client_for(None).get("/").status_code == 503

    class NotJudgedYet(FakeVerdicts):
        def provinces(self):
            return None

    client = client_for(NotJudgedYet(per_province=1))
    for path in ("/?lang=en", "/p/ha-noi?lang=en", "/s/ha-noi-001?lang=en"):
        response = client.get(path)
        assert response.status_code == 503 and "Verdicts not ready" in response.text


def test_pages_are_gzipped_and_locked_down(client):
    response = client.get("/", headers={"Accept-Encoding": "gzip"})
    assert response.headers["content-encoding"] == "gzip"
    assert "script-src 'none'" in response.headers["content-security-policy"]
    raw = client.get("/", headers={"Accept-Encoding": "identity"})
    assert len(gzip.compress(raw.content)) < len(raw.content) / 4


def test_static_stylesheet_is_served_with_a_cache_busting_version(client):
    html = client.get("/").text
    href = re.search(r'href="(/static/style\.css\?v=[0-9a-f]{10})"', html).group(1)
    css = client.get(href)
    assert css.status_code == 200 and "@media (max-width: 720px)" in css.text


def test_alert_runbook_has_an_anchor_per_alert(client):
    html = client.get("/help/alerts?lang=en").text
    for name in ("CommuneSiteRegressed", "CommuneSiteSilent", "CommuneOnBattery", "CommuneDeviceDown",
                 "CommuneUpstreamOutage", "CommuneBehindUpstreamOutage"):
        assert f'id="{name}"' in html


def test_deadline_progress_and_history_chart(client):
    before = local_date(time.time())
    html = client.get("/?lang=en").text
    after = local_date(time.time())
    assert f'data-testid="deadline">{(TODAY + timedelta(days=10)).isoformat()}<' in html
    # days are counted on the page's clock: a run across local midnight may see either day
    deadline = TODAY + timedelta(days=10)
    assert any(f"{(deadline - day).days} days left" in html for day in {before, after})
    assert "<svg class=\"chart\"" in html and 'class="deadline"' in html
    assert "communes completed" in html


def test_catalogs_have_the_same_keys_and_placeholders():
    catalogs = {lang: load_catalog(lang) for lang in LANGS}
    assert catalogs["vi"].keys() == catalogs["en"].keys()
    fields = {lang: {k: sorted(f for _, f, _, _ in string.Formatter().parse(v) if f)
                     for k, v in c.items()} for lang, c in catalogs.items()}
    assert fields["vi"] == fields["en"]
    assert catalogs["vi"]["state_completed"] == "Hoàn thành"


def test_chart_scales_and_marks_the_deadline():
    assert [_nice_max(n) for n in (3321, 98, 7, 34)] == [3500, 100, 7, 35]
    labels = ChartLabels("t", "done", "all", "needed", "Deadline", "today")
    points = [Point(TODAY.replace(day=1), 10, 100), Point(TODAY.replace(day=2), 30, 100)]
    deadline = TODAY.replace(day=20)
    svg = str(burnup_svg(points, deadline, TODAY.replace(day=2), labels))
    assert svg.count("<circle") == 2 and 'class="needed"' in svg and "Deadline 20/" in svg
    assert burnup_svg([], None, TODAY, labels) == ""


def test_numbers_are_written_the_local_way():
    assert number(3321, "vi") == "3.321" and number(3321, "en") == "3,321"


# -- the same pages over the real judge (in process, synthetic evidence) --------------


@pytest.fixture(scope="module")
def judged():
    from commune_collector.web.source import JudgeSource
    from testsupport.web.judge_scenario import Scenario

    scenario = Scenario().settle()
    app = FastAPI()
    install(app)
    grant(app)
    app.state.verdict_source = JudgeSource(scenario.judge)
    return TestClient(app), scenario


def test_real_judge_national_table(judged):
    client, _ = judged
    html = client.get("/?lang=en").text
    # Huế's two judged communes are not all completed, Hà Nội has the lossy one: no province is done
    # for the network item; Hà Nội is done for the items its three communes all pass
    assert dict(zip(re.findall(r'<tr data-item="([^"]+)"', html), cells(html, "provinces-done"),
                    strict=True)) == {"network": "0/34", "backup-link": "1/34", "power": "1/34",
                                      "devices": "1/34", "online-meeting": "1/34", "reporting": "1/34"}
    assert "3 of 6 communes completed" in html and "Specialized data network" in html


def test_real_judge_province_and_commune_show_the_failing_reason(judged):
    client, _ = judged
    html = client.get("/p/ha-noi?lang=en").text
    assert re.findall(r'data-site="([^"]+)"', html) == ["hn-lossy", "hn-ok-1", "hn-ok-2"]
    assert "loss 12.3% over 24h, threshold &lt; 1%" in html
    site = client.get("/s/hn-lossy?lang=en").text
    assert "Packet loss on the primary link under 1%" in site  # the criterion's English title
    row = site[site.index('data-criterion="primary-loss"'):]
    assert re.search(r'data-label="Measured">12.3%<', row) and re.search(r'data-label="Threshold">&lt; 1%<', row)
    vi = client.get("/s/hn-lossy?lang=vi").text
    assert "Tỷ lệ mất gói trên đường truyền chính dưới 1%" in vi and "Chưa hoàn thành" in vi


def test_real_judge_unknown_site_says_why(judged):
    client, _ = judged
    html = client.get("/s/hue-silent?lang=en").text
    assert "Never reported" in html and "has never reported" in html
    assert "Not enough evidence" not in html, "never reported is its own status, not 'unknown'"
    assert client.get("/p/hue?lang=en&state=unknown").text.count('data-site="') == 1
    assert client.get("/p/hue?lang=en&status=never_reported").text.count('data-site="') == 1
