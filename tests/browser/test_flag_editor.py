"""The flag editor in a real browser: rules as cards per environment, built, reordered and saved
without typing JSON, and what "try it" then answers.

The editor (features/static/features/rule_editor.js) writes into the rules formset the server already
validates, so every test ends by reading what was saved, and "try it" evaluates the saved flag through
the SDKs' evaluator. Screenshots: docs/screenshots/flag-editor*.png (the README's tour).
"""

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import cache

from experiments.services import experiment_create, experiment_start
from features.models import Feature
from features.sdk import cache as sdk_cache
from features.services import feature_create
from tests.browser.conftest import TIMEOUT_MS, admin_login, requires_chromium, screenshot

pytestmark = [requires_chromium, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

PASSWORD = "editor-pass-1"
SCREEN = {"width": 1440, "height": 900}


@pytest.fixture(autouse=True)
def _fresh_caches():
    cache.clear()
    sdk_cache.memo_clear()
    yield
    cache.clear()
    sdk_cache.memo_clear()


@pytest.fixture
def admin_user():
    return get_user_model().objects.create_superuser("admin", "admin@example.com", PASSWORD)


@pytest.fixture
def flag(admin_user) -> Feature:
    """A boolean flag, on in production with one rule: false for everyone on the free plan... and
    everyone else (no condition), so "try it" answers false until a rule above it says otherwise."""
    variants = [{"key": "control", "name": "Blue button"}, {"key": "treatment", "name": "Green button"}]
    checkout = experiment_create(
        user=admin_user, key="checkout_test", name="Checkout test", variants=variants
    )
    experiment_start(experiment=checkout, user=admin_user)
    return feature_create(
        user=admin_user,
        key="new_checkout",
        name="New checkout",
        type="boolean",
        default_value=False,
        environments={
            "production": {
                "enabled": True,
                "rules": [
                    {"type": "force", "condition": {"plan": "internal"}, "value": True},
                    {"type": "force", "condition": {}, "value": False},
                ],
            }
        },
    )


def _open(page, flag: Feature) -> None:
    admin_login(page, "admin", PASSWORD)
    page.goto(f"/admin/features/feature/{flag.pk}/change/")
    page.wait_for_selector("#rule-editor .re-card")
    page.click("#re-tab-production")


def _cards(page) -> Any:
    return page.locator("#re-panel-production .re-card")


def _sentences(page) -> list[str]:
    return [text.strip() for text in _cards(page).locator(".re-sentence").all_inner_texts()]


def _try(page, attributes: str, *, as_edited: bool = False) -> tuple[str, str]:
    page.set_checked("#try-draft", as_edited)
    page.select_option("#try_environment", "production")
    page.fill("#try_unit_id", "user-42")
    page.fill("#try_attributes", attributes)
    page.evaluate("document.getElementById('try-result').innerHTML = ''")
    page.click("#try-submit")
    page.wait_for_selector("#try-value")
    return page.inner_text("#try-value"), page.inner_text("#try-result")


def _save(page) -> None:
    page.click("input[name=_continue]")
    page.wait_for_selector("#rule-editor .re-card", state="attached")


def _saved_rules(flag: Feature, environment: str = "production") -> list[dict[str, Any]]:
    return [
        {"type": r.type, "condition": r.condition, "value": r.value, "position": r.position}
        for r in flag.rules.filter(environment__key=environment).order_by("position", "id")
    ]


def _drag(page, source, target) -> None:
    """Press the source's handle, move over the target card in steps, release: a user's drag."""
    page.evaluate("document.getElementById('rule-editor').scrollIntoView()")
    start = source.locator(".re-handle").bounding_box()
    end = target.bounding_box()
    page.mouse.move(start["x"] + start["width"] / 2, start["y"] + start["height"] / 2)
    page.mouse.down()
    page.mouse.move(end["x"] + end["width"] / 2, end["y"] + 10, steps=8)
    page.mouse.up()


def test_flag_editor__two_conditions_built_and_dragged_first__saved_and_try_it_changes(
    chromium, live_server, flag
):
    context = chromium.new_context(viewport=SCREEN, base_url=live_server.url, locale="en-US")
    context.add_init_script("window.localStorage.setItem('django.admin.navSidebarIsOpen', 'false');")
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    _open(page, flag)
    # Given: the table is hidden, the rules read as sentences, and a pro user in Germany gets false
    assert page.locator("#rules-group").is_hidden()
    assert _sentences(page) == [
        "Force true for users where plan is equal to internal",
        "Force false for everyone",
    ]
    assert _try(page, '{"country": "DE", "plan": "pro"}')[0] == "false"

    # When: a new rule, "true for users in DE or FR on the pro plan", is built in the builder...
    page.click("#re-panel-production .re-add")
    card = _cards(page).nth(2)
    assert page.evaluate("document.activeElement.classList.contains('re-type')")
    card.locator(".re-add-clause").click()
    card.locator(".re-attr").nth(0).fill("country")
    card.locator(".re-op").nth(0).select_option("$in")
    card.locator(".re-arg").nth(0).fill("DE, FR")
    card.locator(".re-add-clause").click()
    # (each box has a label that says which condition it belongs to)
    card.get_by_label("Condition 2: attribute").fill("plan")
    card.get_by_label("Condition 2: value").fill("pro")
    assert card.get_by_label("Serve").is_checked()  # a new rule of a boolean flag serves true
    assert (
        _sentences(page)[2] == "Force true for users where country is one of DE, FR and plan is equal to pro"
    )
    # ...and dragged above the other two (Escape during a drag puts the card back)
    handle = _cards(page).nth(2).locator(".re-handle").bounding_box()
    page.mouse.move(handle["x"] + 5, handle["y"] + 5)
    page.mouse.down()
    page.mouse.move(handle["x"] + 5, _cards(page).nth(0).bounding_box()["y"] + 10, steps=6)
    assert _sentences(page)[0].startswith("Force true for users where country")
    page.keyboard.press("Escape")
    page.mouse.up()
    assert _sentences(page)[2].startswith("Force true for users where country")
    _drag(page, _cards(page).nth(2), _cards(page).nth(0))
    assert _sentences(page)[0].startswith("Force true for users where country is one of DE, FR")
    assert _cards(page).nth(0).locator(".re-number").text_content() == "Rule 1"
    screenshot(page, "flag-editor", full_page=False)
    # "try it" answers for the rules as edited before they are saved, and for the saved ones without
    value, why = _try(page, '{"country": "DE", "plan": "pro"}', as_edited=True)
    assert value == "true" and "Rule 1 of Production. (The rules as edited, not saved.)" in why
    assert _try(page, '{"country": "DE", "plan": "pro"}')[0] == "false"
    _save(page)

    # Then: saved in the cards' order, with the condition the builder wrote
    assert page.locator(".messagelist .success").count() == 1
    assert _saved_rules(flag) == [
        {
            "type": "force",
            "condition": {"country": {"$in": ["DE", "FR"]}, "plan": "pro"},
            "value": True,
            "position": 0,
        },
        {"type": "force", "condition": {"plan": "internal"}, "value": True, "position": 1},
        {"type": "force", "condition": {}, "value": False, "position": 2},
    ]
    # and "try it" answers true for the pro user in Germany, by rule 1, and still false in Italy
    value, why = _try(page, '{"country": "IT", "plan": "pro"}')
    assert value == "false" and "Rule 3 of Production" in why
    value, why = _try(page, '{"country": "DE", "plan": "pro"}')
    assert value == "true" and "Rule 1 of Production" in why
    screenshot(page, "flag-editor-try-it", full_page=False)
    context.close()


def test_flag_editor__keyboard_only__reorders_with_arrow_keys_and_saves_the_order(browser_page, flag):
    page = browser_page
    _open(page, flag)
    # The handle takes the arrow keys; focus stays on it as the card moves
    assert page.locator("#rule-editor .re-unsaved").is_hidden()
    _cards(page).nth(1).locator(".re-handle").focus()
    page.keyboard.press("ArrowUp")
    assert page.locator("#rule-editor .re-unsaved").is_visible()
    assert _sentences(page) == [
        "Force false for everyone",
        "Force true for users where plan is equal to internal",
    ]
    assert page.evaluate("document.activeElement.classList.contains('re-handle')")
    assert page.locator("#rule-editor .re-live").inner_text() == "Rule moved to position 1 of 2."
    # Alt+Arrow anywhere in a card; the move buttons say which rule they move
    _cards(page).nth(1).locator(".re-type").focus()
    page.keyboard.press("Alt+ArrowUp")
    assert _sentences(page)[0] == "Force true for users where plan is equal to internal"
    assert _cards(page).nth(0).locator(".re-up").get_attribute("aria-disabled") == "true"
    _cards(page).nth(0).locator(".re-down").focus()
    page.keyboard.press("Enter")
    assert _sentences(page)[0] == "Force false for everyone"
    # Tabs follow the arrow keys too
    page.focus("#re-tab-production")
    page.keyboard.press("ArrowLeft")
    assert page.get_attribute("#re-tab-staging", "aria-selected") == "true"
    assert page.evaluate("document.activeElement.id") == "re-tab-staging"
    assert page.input_value("#try_environment") == "staging"  # "try it" asks about the tab's environment
    _save(page)
    assert [r["condition"] for r in _saved_rules(flag)] == [{}, {"plan": "internal"}]


def test_flag_editor__raw_json_toggle__round_trips_and_keeps_what_the_builder_cannot_show(browser_page, flag):
    page = browser_page
    _open(page, flag)
    card = _cards(page).nth(0)
    # Builder -> JSON: the builder's condition, as the server will store it
    card.locator(".re-json-toggle").click()
    textarea = card.locator(".re-json textarea")
    assert card.locator(".re-json-toggle").get_attribute("aria-pressed") == "true"
    assert textarea.input_value() == '{\n  "plan": "internal"\n}'
    # JSON -> builder: a power user's version (a range and an "any of" group) becomes clauses
    textarea.fill('{"age": {"$gte": 18, "$lt": 65}, "$or": [{"plan": "pro"}, {"beta": {"$exists": true}}]}')
    card.locator(".re-json-toggle").click()
    assert card.locator(".re-builder").is_visible()
    assert card.locator(".re-attr").evaluate_all("boxes => boxes.map(b => b.value)") == [
        "age",
        "age",
        "plan",
        "beta",
    ]
    assert card.locator(".re-group-kind").input_value() == "or"
    assert _sentences(page)[0] == (
        "Force true for users where age is at least 18 and age is less than 65 and (plan is equal to pro or beta is set)"
    )
    card.locator(".re-json-toggle").click()
    assert card.locator(".re-json textarea").input_value().replace("\n", "").replace(" ", "") == (
        '{"age":{"$gte":18,"$lt":65},"$or":[{"plan":"pro"},{"beta":{"$exists":true}}]}'
    )
    page.evaluate("document.getElementById('rule-editor').scrollIntoView()")
    screenshot(page, "flag-editor-json", full_page=False)
    # What the builder cannot show stays JSON, with the reason
    textarea.fill('{"$not": {"country": "FR"}}')
    card.locator(".re-json-toggle").click()
    assert card.locator(".re-json").is_visible()
    assert "cannot show this condition ($not)" in card.locator(".re-json-note").inner_text()
    _save(page)
    assert _saved_rules(flag)[0]["condition"] == {"$not": {"country": "FR"}}
    # Reloaded, a condition the builder cannot show opens as JSON
    assert _cards(page).nth(0).locator(".re-json").is_visible()


def test_flag_editor__server_refuses_a_condition__the_error_is_on_its_card(browser_page, flag):
    page = browser_page
    _open(page, flag)
    card = _cards(page).nth(1)
    card.locator(".re-json-toggle").click()
    card.locator(".re-json textarea").fill('{"plan": {"$bogus": 1}}')
    page.click("input[name=_continue]")
    page.wait_for_selector("#rule-editor .re-card.re-has-errors")
    # The page came back with what was posted; the error sits on the second card, which stays JSON
    errors = _cards(page).nth(1).locator(".re-errors").inner_text()
    assert "$bogus" in errors
    assert _cards(page).nth(0).locator(".re-errors").count() == 0
    assert _cards(page).nth(1).locator(".re-json textarea").input_value() == '{"plan": {"$bogus": 1}}'
    assert page.locator("#re-tab-production.re-tab-errors").count() == 1
    assert _saved_rules(flag)[1]["condition"] == {}  # nothing saved


def test_flag_editor__unfinished_clause__save_waits_and_points_at_it(browser_page, flag):
    page = browser_page
    _open(page, flag)
    card = _cards(page).nth(1)
    card.locator(".re-add-clause").click()
    card.locator(".re-attr").fill("country")  # no value yet
    page.click("input[name=_continue]")
    assert page.url.endswith(f"/admin/features/feature/{flag.pk}/change/")  # still here, not saved
    assert card.locator(".re-clause-error").inner_text() == 'Type a value ("" for empty text).'
    assert page.evaluate("document.activeElement.classList.contains('re-arg')")
    assert card.locator(".re-arg").get_attribute("aria-invalid") == "true"
    assert "is not finished: Type a value" in page.locator("#rule-editor .re-live").inner_text()
    # "try it" with the rules as edited says the same, without asking the server
    page.check("#try-draft")
    page.click("#try-submit")
    assert (
        page.inner_text("#try-result")
        == 'Production rule 2 is not finished: Type a value ("" for empty text).'
    )
    # An experiment rule without its experiment waits too
    card.locator(".re-remove-clause").click()
    card.locator(".re-type").select_option("experiment")
    page.click("input[name=_continue]")
    assert card.locator(".re-experiment-error").inner_text() == "Pick the experiment that decides."
    assert page.evaluate("document.activeElement.classList.contains('re-experiment')")
    assert flag.rules.filter(type="experiment").count() == 0


def test_flag_editor__experiment_rule__shows_the_variants_and_saves_their_values(browser_page, flag):
    page = browser_page
    _open(page, flag)
    page.click("#re-panel-production .re-add")
    card = _cards(page).nth(2)
    card.locator(".re-type").select_option("experiment")
    card.locator(".re-experiment").select_option(label="Checkout test (checkout_test) · running")
    labels = card.locator(".re-variants label").all_inner_texts()
    assert labels == ["control (Blue button) · 50% gets", "treatment (Green button) · 50% gets"]
    card.locator(".re-variants .re-switch-input").nth(1).check()
    assert (
        _sentences(page)[2] == "Run experiment checkout_test for everyone: control → false / treatment → true"
    )
    _drag(page, _cards(page).nth(2), _cards(page).nth(1))
    _save(page)
    rule = flag.rules.get(environment__key="production", position=1)
    assert (rule.type, rule.experiment.key, rule.variant_values) == (
        "experiment",
        "checkout_test",
        {"control": False, "treatment": True},
    )


@pytest.mark.parametrize("width", [1440, 900])
def test_flag_editor__sidebar_open__fits_the_screen(chromium, live_server, flag, width):
    context = chromium.new_context(
        viewport={"width": width, "height": 900}, base_url=live_server.url, locale="en-US"
    )
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    _open(page, flag)
    card = _cards(page).nth(0)
    card.locator(".re-add-group").click()
    size = page.evaluate(
        "() => ({screen: document.documentElement.clientWidth, page: document.documentElement.scrollWidth,"
        " card: document.querySelector('#re-panel-production .re-card').getBoundingClientRect().right})"
    )
    assert size["page"] <= size["screen"] and size["card"] <= size["screen"], size
    screenshot(page, f"flag-editor-{width}", docs=False)
    context.close()


def test_flag_editor__add_page__value_inputs_fit_the_flags_type_and_a_rollout_saves(browser_page, admin_user):
    page = browser_page
    admin_login(page, "admin", PASSWORD)
    page.goto("/admin/features/feature/add/")
    page.fill("#id_name", "Discount")
    page.fill("#id_key", "discount")
    page.select_option("#id_type", "number")
    page.fill("#id_default_value", "0")
    page.click("#re-tab-staging")
    page.click("#re-panel-staging .re-add")
    card = page.locator("#re-panel-staging .re-card").nth(0)
    # A number flag gets a number box; a rollout a share in percent
    assert card.locator(".re-value input").get_attribute("type") == "number"
    card.locator(".re-type").select_option("rollout")
    card.locator(".re-value input").fill("2.5")
    card.locator(".re-percent").fill("30")
    assert card.locator(".re-sentence").inner_text() == "Serve 2.5 to 30% of all users"
    # The type changed: the inputs follow, keeping the value where it fits
    page.select_option("#id_type", "string")
    assert card.locator(".re-value input").get_attribute("type") == "text"
    assert card.locator(".re-value input").input_value() == "2.5"
    assert card.locator(".re-sentence").inner_text() == "Serve “2.5” to 30% of all users"
    page.select_option("#id_type", "json")
    assert card.locator(".re-value textarea").count() == 1
    page.select_option("#id_type", "number")
    page.fill("#id_default_value", "0")
    page.click("input[name=_continue]")
    page.wait_for_selector(".messagelist .success")
    rule = Feature.objects.get(key="discount").rules.get()
    assert (rule.environment.key, rule.type, rule.value, rule.coverage, rule.condition) == (
        "staging",
        "rollout",
        2.5,
        0.3,
        {},
    )


def test_flag_editor__any_of_group_built_with_buttons__written_as_or_and_saved(browser_page, flag):
    page = browser_page
    _open(page, flag)
    card = _cards(page).nth(1)
    card.locator(".re-add-group").click()
    group = card.locator(".re-nested")
    assert page.evaluate("document.activeElement.classList.contains('re-attr')")  # the group's first box
    group.locator(".re-attr").fill("plan")
    group.locator(".re-arg").fill("pro")
    group.locator(".re-add-clause").click()
    group.locator(".re-attr").nth(1).fill("beta")
    group.locator(".re-op").nth(1).select_option("$exists")
    assert _sentences(page)[1] == "Force false for users where (plan is equal to pro or beta is set)"
    group.locator(".re-group-kind").select_option("nor")
    assert _sentences(page)[1] == "Force false for users where none of (plan is equal to pro, beta is set)"
    group.locator(".re-group-kind").select_option("or")
    _save(page)
    assert _saved_rules(flag)[1]["condition"] == {"$or": [{"plan": "pro"}, {"beta": {"$exists": True}}]}
