/* The flag editor: a flag's rules as cards per environment, over the admin's rules formset.
 *
 * Progressive enhancement. The page still holds the rules inline formset (one table row per rule,
 * the fields the server validates: environment, position, type, condition, value, coverage,
 * experiment, variant_values, DELETE). This script hides that table and shows the same rules as
 * cards; every edit on a card is written at once into its row's fields, so a save posts exactly what
 * the table would have posted and the server's validation stays the authority (its errors are shown
 * on the card they belong to). Without JavaScript the table works as before.
 *
 * Order: the cards' order in an environment is written as the rows' positions (0, 1, ...). Cards are
 * reordered by dragging their handle, with the handle's arrow keys, with Alt+Arrow Up/Down anywhere
 * in a card, or with the "Move up"/"Move down" buttons.
 */
(() => {
  "use strict";
  const C = window.FlagConditions;
  const PREFIX = "rules";

  const dataNode = document.getElementById("rule-editor-data");
  const group = document.getElementById(`${PREFIX}-group`);
  const form = group && group.closest("form");
  // Only over an editable formset (its empty row is there when rules may be added); else the table stays.
  if (!dataNode || !group || !form || !C || !document.getElementById(`${PREFIX}-empty`)) { return; }
  const data = JSON.parse(dataNode.textContent);
  const totalForms = document.getElementById(`id_${PREFIX}-TOTAL_FORMS`);
  const typeSelect = document.getElementById("id_type");
  const experiments = new Map(data.experiments.map((e) => [String(e.id), e]));
  const RULE_TYPES = [
    ["force", "Force a value"],
    ["rollout", "Roll out to a share"],
    ["experiment", "Run an experiment"],
  ];

  let uid = 0;
  const nextId = (stem) => `re-${stem}-${++uid}`;

  function el(tag, attributes = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attributes)) {
      if (value === null || value === undefined || value === false) { continue; }
      if (key === "class") { node.className = value; } else if (key === "text") { node.textContent = value; } else if (key.startsWith("on")) { node.addEventListener(key.slice(2), value); } else { node.setAttribute(key, value === true ? "" : value); }
    }
    for (const child of children.flat()) {
      if (child !== null && child !== undefined && child !== false) { node.append(child); }
    }
    return node;
  }

  const flagType = () => (typeSelect ? typeSelect.value : data.feature_type);

  function parseJson(text) {
    try { return {value: JSON.parse(text)}; } catch (error) { return {error: error.message}; }
  }

  // --- the live region -----------------------------------------------------------------------------------
  const live = el("div", {class: "re-live", "aria-live": "polite", role: "status"});
  const announce = (text) => { live.textContent = ""; window.setTimeout(() => { live.textContent = text; }, 30); };

  // --- rules read from the formset rows ----------------------------------------------------------------------
  const rules = [];

  function field(rule, name) {
    return rule.row.querySelector(`[name="${PREFIX}-${rule.index}-${name}"]`);
  }

  function rowErrors(row) {
    const messages = [];
    const previous = row.previousElementSibling;
    if (previous && previous.classList.contains("row-form-errors")) {
      previous.querySelectorAll("li").forEach((li) => messages.push(li.textContent.trim()));
    }
    row.querySelectorAll("td ul.errorlist li").forEach((li) => {
      const cell = li.closest("td");
      const name = [...cell.classList].find((c) => c.startsWith("field-"));
      messages.push(`${name ? name.slice(6).replace("_", " ") + ": " : ""}${li.textContent.trim()}`);
    });
    return messages;
  }

  function ruleFromRow(row, index, isNew) {
    const rule = {row, index, isNew, deleted: false, showErrors: false};
    rule.environment = field(rule, "environment").value;
    rule.type = field(rule, "type").value || "force";
    rule.valueText = (field(rule, "value").value || "").trim();
    const coverage = field(rule, "coverage").value;
    rule.coverage = coverage === "" ? "" : String(Math.round(Number(coverage) * 10000) / 100);
    rule.experiment = field(rule, "experiment").value;
    const parsedValues = parseJson(field(rule, "variant_values").value || "{}");
    rule.variantTexts = {};
    if (parsedValues.value && typeof parsedValues.value === "object") {
      for (const [key, value] of Object.entries(parsedValues.value)) { rule.variantTexts[key] = JSON.stringify(value); }
    }
    rule.serverErrors = rowErrors(row);
    conditionFromText(rule, field(rule, "condition").value || "{}");
    return rule;
  }

  function conditionFromText(rule, text) {
    rule.jsonText = text.trim() || "{}";
    const parsed = parseJson(rule.jsonText);
    const shown = parsed.error ? {error: `not valid JSON (${parsed.error})`} : C.fromDocument(parsed.value);
    if (shown.group) {
      rule.mode = "builder";
      rule.group = shown.group;
      rule.builderNote = "";
    } else {
      rule.mode = "json";
      rule.group = {kind: "and", items: []};
      rule.builderNote = `The builder cannot show this condition (${shown.error}); edit it as JSON.`;
    }
  }

  // --- writing the row's fields ------------------------------------------------------------------------------
  function write(rule, name, value) {
    const input = field(rule, name);
    if (!input) { return; }
    if (input.tagName === "SELECT" && value !== "" && ![...input.options].some((o) => o.value === value)) {
      const experiment = experiments.get(value);
      input.append(new Option(experiment ? experiment.label : value, value));
    }
    if (input.value !== value && ready) { markUnsaved(); }
    input.value = value;
  }

  // Once the page is built, any change to a row says so until the flag is saved.
  let ready = false;
  const unsaved = el("p", {class: "re-unsaved", hidden: true, text: "Unsaved changes: save the flag to apply them."});
  function markUnsaved() { unsaved.hidden = false; }

  function writeCondition(rule) {
    if (rule.mode === "json") {
      write(rule, "condition", rule.jsonText.trim() || "{}");
      return;
    }
    const result = C.toDocument(rule.group);
    if (result.document) { write(rule, "condition", JSON.stringify(result.document)); }
  }

  function writeVariantValues(rule) {
    const experiment = experiments.get(rule.experiment);
    const keys = experiment ? experiment.variants.map((v) => v.key) : Object.keys(rule.variantTexts);
    const body = keys.map((key) => `${JSON.stringify(key)}: ${(rule.variantTexts[key] || "").trim() || "null"}`);
    write(rule, "variant_values", rule.type === "experiment" ? `{${body.join(", ")}}` : "");
  }

  function writeAll(rule) {
    write(rule, "environment", rule.environment);
    write(rule, "type", rule.type);
    writeCondition(rule);
    const usesValue = rule.type !== "experiment";
    write(rule, "value", usesValue ? rule.valueText : "");
    write(rule, "coverage", rule.type === "rollout" && rule.coverage !== "" ? String(Math.round(Number(rule.coverage) * 100) / 10000) : "");
    write(rule, "experiment", rule.type === "experiment" ? rule.experiment : "");
    writeVariantValues(rule);
  }

  function writePositions() {
    for (const panel of panels.values()) {
      [...panel.list.children].forEach((card, position) => {
        const rule = card.rule;
        write(rule, "position", String(position));
        card.querySelector(".re-number").textContent = `Rule ${position + 1}`;
        const count = panel.list.children.length;
        const up = card.querySelector(".re-up"), down = card.querySelector(".re-down");
        up.setAttribute("aria-label", `Move rule ${position + 1} up`);
        down.setAttribute("aria-label", `Move rule ${position + 1} down`);
        up.setAttribute("aria-disabled", position === 0 ? "true" : "false");
        down.setAttribute("aria-disabled", position === count - 1 ? "true" : "false");
        card.querySelector(".re-remove").setAttribute("aria-label", `Remove rule ${position + 1}`);
      });
      panel.empty.hidden = panel.list.children.length > 0;
      updateTab(panel);
    }
  }

  // --- values that fit the flag's type -------------------------------------------------------------------------
  function coerce(text, type) {
    const parsed = parseJson(text);
    const value = parsed.error ? text : parsed.value;
    if (type === "boolean") { return JSON.stringify(value === true); }
    if (type === "number") { return typeof value === "number" ? String(value) : (Number.isFinite(Number(value)) && value !== "" && value !== null ? String(Number(value)) : "0"); }
    if (type === "string") { return JSON.stringify(typeof value === "string" ? value : (value === null || value === undefined || text === "" ? "" : JSON.stringify(value))); }
    return text === "" ? "{}" : text;
  }

  /** An input for one value of the flag's type; ``onChange`` receives the value as JSON text. */
  function valueInput(label, text, onChange) {
    const id = nextId("value");
    const type = flagType();
    const parsed = parseJson(text);
    let input;
    if (type === "boolean") {
      const state = el("span", {class: "re-switch-state", "aria-hidden": "true", text: parsed.value === true ? "true" : "false"});
      input = el("input", {type: "checkbox", role: "switch", id, class: "re-switch-input"});
      input.checked = parsed.value === true;
      input.addEventListener("change", () => { state.textContent = String(input.checked); onChange(String(input.checked)); });
      return el("div", {class: "re-value re-value-boolean"},
        el("label", {for: id, text: label}), el("span", {class: "re-switch"}, input, state));
    }
    if (type === "number") {
      input = el("input", {type: "number", step: "any", id, class: "re-number-input", value: parsed.error ? "" : String(parsed.value ?? "")});
      input.addEventListener("input", () => onChange(input.value.trim()));
    } else if (type === "string") {
      input = el("input", {type: "text", id, value: typeof parsed.value === "string" ? parsed.value : text, placeholder: "blue"});
      input.addEventListener("input", () => onChange(JSON.stringify(input.value)));
    } else {
      const hint = el("span", {class: "re-hint", id: `${id}-hint`});
      input = el("textarea", {id, rows: "3", spellcheck: "false", class: "re-json-value", placeholder: '{"color": "blue"}', "aria-describedby": `${id}-hint`});
      input.value = text;
      input.addEventListener("input", () => {
        const check = input.value.trim() ? parseJson(input.value) : {error: "empty"};
        hint.textContent = check.error ? "Not valid JSON yet." : "";
        input.setAttribute("aria-invalid", check.error ? "true" : "false");
        onChange(input.value.trim());
      });
      return el("div", {class: "re-value re-value-json"}, el("label", {for: id, text: label}), input, hint);
    }
    return el("div", {class: `re-value re-value-${type}`}, el("label", {for: id, text: label}), input);
  }

  function valueWords(text) {
    const parsed = parseJson(text);
    if (parsed.error || text === "") { return "…"; }
    const words = typeof parsed.value === "string" ? `“${parsed.value}”` : JSON.stringify(parsed.value);
    return words.length > 40 ? `${words.slice(0, 39)}…` : words;
  }

  // --- the rule in a sentence -------------------------------------------------------------------------------------
  function whoWords(rule) {
    if (rule.mode === "json") {
      const parsed = parseJson(rule.jsonText);
      if (!parsed.error) {
        const shown = C.fromDocument(parsed.value);
        if (shown.group) { return C.describe(shown.group); }
      }
      return rule.jsonText.trim() === "{}" ? "" : "a custom condition";
    }
    return C.describe(rule.group);
  }

  function sentence(rule) {
    const who = whoWords(rule);
    const users = who === "a custom condition" ? "users matching a custom condition" : who ? `users where ${who}` : "";
    if (rule.type === "force") { return `Force ${valueWords(rule.valueText)} for ${users || "everyone"}`; }
    if (rule.type === "rollout") {
      const share = rule.coverage === "" ? "…" : `${rule.coverage}%`;
      return `Serve ${valueWords(rule.valueText)} to ${share} of ${users || "all users"}`;
    }
    const experiment = experiments.get(rule.experiment);
    if (!experiment) { return `Run an experiment (pick one) for ${users || "everyone"}`; }
    const values = experiment.variants.map((v) => `${v.key} → ${valueWords(rule.variantTexts[v.key] || "")}`);
    return `Run experiment ${experiment.key} for ${users || "everyone"}: ${values.join(" / ")}`;
  }

  function refresh(rule) {
    rule.card.querySelector(".re-sentence").textContent = sentence(rule);
  }

  // --- the condition builder ------------------------------------------------------------------------------------------
  function operatorSelect(clause, label, onChange) {
    const select = el("select", {class: "re-op", "aria-label": label});
    for (const [operator, spec] of Object.entries(C.OPERATORS)) {
      select.append(new Option(spec.label, operator, false, operator === clause.operator));
    }
    select.addEventListener("change", () => onChange(select.value));
    return select;
  }

  function argumentInput(clause, label, onInput) {
    const spec = C.OPERATORS[clause.operator];
    if (!spec || spec.argument === "none") { return null; }
    if (spec.argument === "type") {
      const select = el("select", {class: "re-arg", "aria-label": `${label}type`});
      select.append(new Option("pick a type", ""));
      for (const name of C.TYPE_NAMES) { select.append(new Option(name, name, false, clause.text === name)); }
      select.addEventListener("change", () => onInput(select.value));
      return select;
    }
    const title = spec.argument === "list" ? "Values, separated by commas; quotes keep text as text (\"42\")"
      : spec.argument === "text" ? (clause.operator.startsWith("$regex") ? "A regular expression (RE2)" : "A version such as 2.1.0")
        : "Value; quotes keep text as text (\"42\")";
    const input = el("input", {type: "text", class: "re-arg", "aria-label": `${label}value`, title, placeholder: C.PLACEHOLDERS[spec.argument] || "", value: clause.text || ""});
    input.addEventListener("input", () => onInput(input.value));
    return input;
  }

  function renderClause(rule, group, clause) {
    const errorId = nextId("clause-error");
    const error = el("span", {class: "re-clause-error", id: errorId});
    const li = el("li", {class: "re-clause"});
    const showError = () => {
      const result = C.clauseDocument(clause);
      const visible = result.error && (clause.touched || rule.showErrors);
      error.textContent = visible ? result.error : "";
      li.classList.toggle("re-invalid", Boolean(visible));
      li.querySelectorAll("input, select").forEach((input) => input.setAttribute("aria-invalid", visible ? "true" : "false"));
    };
    const changed = () => { clause.touched = true; writeCondition(rule); refresh(rule); showError(); };
    const number = `Condition ${group.items.indexOf(clause) + 1}`;
    const attribute = el("input", {type: "text", class: "re-attr", "aria-label": `${number}: attribute`, "aria-describedby": errorId, list: "re-attributes", placeholder: "attribute, e.g. country", value: clause.attribute || "", autocomplete: "off"});
    attribute.addEventListener("input", () => {
      clause.attribute = attribute.value;
      remove.setAttribute("aria-label", `Remove the condition on ${clause.attribute || "an attribute"}`);
      changed();
    });
    const operator = operatorSelect(clause, `${number}: operator`, (value) => {
      const before = C.OPERATORS[clause.operator], after = C.OPERATORS[value];
      clause.operator = value;
      if (!before || before.argument !== after.argument) { clause.text = ""; }
      const replacement = renderClause(rule, group, clause);
      li.replaceWith(replacement);
      replacement.querySelector(".re-op").focus();
      changed();
    });
    const argument = argumentInput(clause, `${number}: `, (value) => { clause.text = value; changed(); });
    if (argument) { argument.setAttribute("aria-describedby", errorId); }
    const remove = el("button", {type: "button", class: "re-icon re-remove-clause", "aria-label": `Remove the condition on ${clause.attribute || "an attribute"}`, text: "×",
      onclick: () => {
        const index = group.items.indexOf(clause);
        group.items.splice(index, 1);
        writeCondition(rule); refresh(rule); renderBuilder(rule);
        const clauses = rule.card.querySelectorAll(".re-attr");
        (clauses[Math.min(index, clauses.length - 1)] || rule.card.querySelector(".re-add-clause")).focus();
        announce("Condition removed.");
      }});
    li.append(attribute, operator, ...(argument ? [argument] : []), remove, error);
    showError();
    return li;
  }

  function renderGroup(rule, groupModel, depth, parent) {
    const items = el("ul", {class: "re-items"});
    for (const item of groupModel.items) {
      items.append(item.items ? el("li", {class: "re-subgroup"}, renderGroup(rule, item, depth + 1, groupModel)) : renderClause(rule, groupModel, item));
    }
    const addClause = el("button", {type: "button", class: "re-small re-add-clause", text: depth ? "+ Condition in this group" : "+ Condition",
      onclick: () => {
        groupModel.items.push({attribute: "", operator: "is", text: ""});
        writeCondition(rule); refresh(rule); renderBuilder(rule);
        const boxes = rule.card.querySelectorAll(depth ? ".re-subgroup .re-attr" : ".re-attr");
        // the new clause is the last of its group: find it by walking the rendered tree
        const added = findClauseInput(rule, groupModel) || boxes[boxes.length - 1];
        if (added) { added.focus(); }
        announce("Condition added: name the attribute.");
      }});
    const buttons = el("div", {class: "re-group-buttons"}, addClause);
    if (depth < C.MAX_GROUP_DEPTH) {
      buttons.append(el("button", {type: "button", class: "re-small re-add-group", text: "+ Group (any of)",
        onclick: () => {
          const added = {kind: "or", items: [{attribute: "", operator: "is", text: ""}]};
          groupModel.items.push(added);
          writeCondition(rule); refresh(rule); renderBuilder(rule);
          const input = findClauseInput(rule, added);
          if (input) { input.focus(); }
          announce("Group added: users match it when any of its conditions holds.");
        }}));
    }
    if (!depth) {
      const everyone = groupModel.items.length ? null : el("p", {class: "re-everyone", text: "Everyone (no condition)."});
      return el("div", {class: "re-group re-top"}, everyone, items, buttons);
    }
    const kind = el("select", {class: "re-group-kind", "aria-label": "How this group's conditions combine"});
    for (const [value, words] of Object.entries(C.GROUP_KINDS)) { kind.append(new Option(words, value, false, value === groupModel.kind)); }
    kind.addEventListener("change", () => { groupModel.kind = kind.value; writeCondition(rule); refresh(rule); });
    const removeGroup = el("button", {type: "button", class: "re-small re-remove-group", text: "Remove group",
      onclick: () => {
        parent.items.splice(parent.items.indexOf(groupModel), 1);
        writeCondition(rule); refresh(rule); renderBuilder(rule);
        rule.card.querySelector(".re-add-clause").focus();
        announce("Group removed.");
      }});
    const legend = el("legend", {}, "Users matching ", kind, " of these");
    return el("fieldset", {class: "re-group re-nested"}, legend, items, buttons, removeGroup);
  }

  function findClauseInput(rule, target) {
    // The attribute box of the last clause of ``target`` (a group), in document order.
    let found = null;
    const walk = (groupModel, node) => {
      const lis = [...node.querySelector(":scope > .re-items").children];
      groupModel.items.forEach((item, i) => {
        if (item.items) { walk(item, lis[i].querySelector(":scope > .re-group")); } else if (groupModel === target) { found = lis[i].querySelector(".re-attr"); }
      });
    };
    walk(rule.group, rule.card.querySelector(".re-builder > .re-group"));
    return found;
  }

  function renderBuilder(rule) {
    const box = rule.card.querySelector(".re-builder");
    box.replaceChildren(renderGroup(rule, rule.group, 0, null));
  }

  function setMode(rule, mode) {
    const toggle = rule.card.querySelector(".re-json-toggle");
    const textarea = rule.card.querySelector(".re-json textarea");
    const note = rule.card.querySelector(".re-json-note");
    if (mode === "json") {
      if (rule.mode === "builder") {
        const result = C.toDocument(rule.group);
        rule.jsonText = JSON.stringify(result.document || JSON.parse(field(rule, "condition").value || "{}"), null, 2);
      }
      textarea.value = rule.jsonText;
      textarea.rows = Math.min(16, Math.max(3, rule.jsonText.split("\n").length));
      rule.mode = "json";
      note.textContent = rule.builderNote;
    } else {
      const parsed = parseJson(textarea.value.trim() || "{}");
      if (parsed.error) { note.textContent = `Not valid JSON (${parsed.error}): fix it to go back to the builder.`; textarea.focus(); return false; }
      const shown = C.fromDocument(parsed.value);
      if (!shown.group) { note.textContent = `The builder cannot show this condition (${shown.error}); keep it as JSON.`; textarea.focus(); return false; }
      rule.group = shown.group;
      rule.mode = "builder";
      rule.builderNote = "";
      note.textContent = "";
      renderBuilder(rule);
    }
    rule.card.querySelector(".re-builder").hidden = rule.mode !== "builder";
    rule.card.querySelector(".re-json").hidden = rule.mode !== "json";
    toggle.setAttribute("aria-pressed", rule.mode === "json" ? "true" : "false");
    toggle.textContent = rule.mode === "json" ? "Use the builder" : "Edit as JSON";
    writeCondition(rule);
    refresh(rule);
    return true;
  }

  // --- what the users get ---------------------------------------------------------------------------------------------
  function renderWhat(rule) {
    const box = rule.card.querySelector(".re-what");
    const parts = [];
    if (rule.type !== "experiment") {
      if (rule.valueText === "") { rule.valueText = coerce("", flagType()); write(rule, "value", rule.valueText); }
      parts.push(valueInput("Serve", rule.valueText, (text) => { rule.valueText = text; write(rule, "value", text); refresh(rule); }));
    }
    if (rule.type === "rollout") {
      const id = nextId("coverage");
      if (rule.coverage === "") { rule.coverage = "50"; writeAll(rule); }
      const number = el("input", {type: "number", id, min: "0", max: "100", step: "0.1", value: rule.coverage, class: "re-percent"});
      const slider = el("input", {type: "range", min: "0", max: "100", step: "1", value: rule.coverage, "aria-label": "Share of matching users, slider", class: "re-slider"});
      const set = (value, source) => {
        rule.coverage = value;
        if (source !== number) { number.value = value; }
        if (source !== slider) { slider.value = value; }
        writeAll(rule); refresh(rule);
      };
      number.addEventListener("input", () => set(number.value, number));
      slider.addEventListener("input", () => set(slider.value, slider));
      parts.push(el("div", {class: "re-coverage"}, el("label", {for: id, text: "to this share of matching users (%)"}), el("span", {class: "re-coverage-inputs"}, number, slider)));
    }
    if (rule.type === "experiment") {
      const id = nextId("experiment");
      const select = el("select", {id, class: "re-experiment"});
      select.append(new Option("Pick an experiment…", ""));
      for (const experiment of data.experiments) {
        select.append(new Option(`${experiment.label} · ${experiment.status}`, String(experiment.id), false, String(experiment.id) === rule.experiment));
      }
      select.addEventListener("change", () => {
        rule.experiment = select.value;
        writeAll(rule); refresh(rule); renderWhat(rule);
        box.querySelector(".re-experiment").focus();
      });
      const missing = rule.showErrors && !rule.experiment;
      if (missing) {
        select.setAttribute("aria-invalid", "true");
        select.setAttribute("aria-describedby", `${id}-error`);
      }
      parts.push(el("div", {class: "re-experiment-pick"}, el("label", {for: id, text: "Experiment"}), select,
        missing ? el("span", {class: "re-clause-error re-experiment-error", id: `${id}-error`, text: "Pick the experiment that decides."}) : null));
      const experiment = experiments.get(rule.experiment);
      if (experiment) {
        const total = experiment.variants.reduce((sum, v) => sum + v.weight, 0) || 1;
        const list = el("ul", {class: "re-variants", "aria-label": `Values for the variants of ${experiment.key}`});
        for (const variant of experiment.variants) {
          if (rule.variantTexts[variant.key] === undefined) { rule.variantTexts[variant.key] = coerce("", flagType()); }
          const share = `${Math.round((variant.weight / total) * 1000) / 10}%`;
          const label = `${variant.key}${variant.name && variant.name !== variant.key ? ` (${variant.name})` : ""} · ${share} gets`;
          list.append(el("li", {}, valueInput(label, rule.variantTexts[variant.key], (text) => {
            rule.variantTexts[variant.key] = text; writeVariantValues(rule); refresh(rule);
          })));
        }
        writeVariantValues(rule);
        parts.push(list);
        if (experiment.status !== "running") {
          parts.push(el("p", {class: "re-note", text: `This experiment is ${experiment.status}: it assigns nobody until it runs, so this rule is skipped and users fall through to the next rule.`}));
        }
      }
    }
    box.replaceChildren(...parts);
  }

  // --- a card -------------------------------------------------------------------------------------------------------
  /** Put ``card`` at ``to`` in its list by moving the cards in between, never the card itself: a
   * node taken out of the document loses the focus and the pointer capture of a drag. */
  function placeAt(card, to) {
    const list = card.parentElement;
    const siblings = [...list.children];
    const from = siblings.indexOf(card);
    if (to < from) {
      for (let i = from - 1; i >= to; i--) { list.insertBefore(siblings[i], card.nextSibling); }
    } else {
      for (let i = from + 1; i <= to; i++) { list.insertBefore(siblings[i], card); }
    }
  }

  function moveCard(rule, step) {
    const card = rule.card;
    const list = card.parentElement;
    const siblings = [...list.children];
    const from = siblings.indexOf(card);
    const to = from + step;
    if (to < 0 || to >= siblings.length) { return; }
    placeAt(card, to);
    writePositions();
    announce(`Rule moved to position ${to + 1} of ${siblings.length}.`);
  }

  function startDrag(rule, event) {
    if (event.button !== 0) { return; }
    event.preventDefault();
    const handle = event.currentTarget, card = rule.card, list = card.parentElement;
    const start = [...list.children].indexOf(card);
    handle.setPointerCapture(event.pointerId);
    card.classList.add("re-dragging");
    const move = (moveEvent) => {
      // Near the window's top or bottom edge the page scrolls, so a rule can travel past the fold.
      if (moveEvent.clientY < 40) { window.scrollBy(0, -20); } else if (moveEvent.clientY > window.innerHeight - 40) { window.scrollBy(0, 20); }
      const over = document.elementFromPoint(moveEvent.clientX, moveEvent.clientY);
      const target = over && over.closest(".re-card");
      if (!target || target === card || target.parentElement !== list) { return; }
      // Dragged over a card, the dragged card takes its place (the others shift).
      placeAt(card, [...list.children].indexOf(target));
    };
    const cancel = (keyEvent) => {
      if (keyEvent.key !== "Escape") { return; }
      keyEvent.preventDefault();
      placeAt(card, start);
      handle.releasePointerCapture(event.pointerId);
      end();
    };
    const end = () => {
      handle.removeEventListener("pointermove", move);
      handle.removeEventListener("pointerup", end);
      handle.removeEventListener("pointercancel", end);
      document.removeEventListener("keydown", cancel, true);
      card.classList.remove("re-dragging");
      const finish = [...list.children].indexOf(card);
      writePositions();
      if (finish !== start) { announce(`Rule moved to position ${finish + 1} of ${list.children.length}.`); }
    };
    handle.addEventListener("pointermove", move);
    handle.addEventListener("pointerup", end);
    handle.addEventListener("pointercancel", end);
    document.addEventListener("keydown", cancel, true);
  }

  function buildCard(rule) {
    const sentenceId = nextId("sentence");
    const typeId = nextId("type");
    const errorsId = nextId("errors");
    const handle = el("button", {type: "button", class: "re-handle", "aria-label": "Drag to reorder (or use the arrow keys)", title: "Drag to reorder; with the keyboard: arrow keys, or Alt+Arrow anywhere in the rule", text: "⠿"});
    handle.addEventListener("pointerdown", (event) => startDrag(rule, event));
    handle.addEventListener("keydown", (event) => {
      if (event.altKey || event.ctrlKey || event.metaKey) { return; }
      if (event.key === "ArrowUp" || event.key === "ArrowDown") { event.preventDefault(); moveCard(rule, event.key === "ArrowUp" ? -1 : 1); }
    });
    const moveButton = (cls, text, step) => el("button", {type: "button", class: `re-small ${cls}`, text,
      onclick: (event) => { if (event.currentTarget.getAttribute("aria-disabled") !== "true") { moveCard(rule, step); } }});
    const remove = el("button", {type: "button", class: "re-small re-remove", text: "Remove", onclick: () => removeRule(rule)});
    const typeSelectCard = el("select", {id: typeId, class: "re-type"});
    for (const [value, words] of RULE_TYPES) { typeSelectCard.append(new Option(words, value, false, value === rule.type)); }
    typeSelectCard.addEventListener("change", () => { rule.type = typeSelectCard.value; writeAll(rule); renderWhat(rule); refresh(rule); });
    const errors = el("ul", {class: "errorlist re-errors", id: errorsId});
    rule.serverErrors.forEach((message) => errors.append(el("li", {text: message})));
    const jsonId = nextId("json");
    const jsonArea = el("textarea", {id: jsonId, rows: "4", spellcheck: "false", class: "re-json-text"});
    jsonArea.value = rule.jsonText;
    jsonArea.addEventListener("input", () => {
      rule.jsonText = jsonArea.value;
      const check = parseJson(jsonArea.value.trim() || "{}");
      rule.card.querySelector(".re-json-note").textContent = check.error ? `Not valid JSON yet (${check.error}).` : "";
      writeCondition(rule); refresh(rule);
    });
    const toggle = el("button", {type: "button", class: "re-small re-json-toggle", "aria-pressed": "false", "aria-controls": jsonId, text: "Edit as JSON",
      onclick: () => { setMode(rule, rule.mode === "json" ? "builder" : "json"); toggle.focus(); }});
    const card = el("li", {class: `re-card${rule.serverErrors.length ? " re-has-errors" : ""}`, "aria-labelledby": sentenceId, "aria-describedby": rule.serverErrors.length ? errorsId : null},
      el("div", {class: "re-card-head"},
        handle,
        el("span", {class: "re-number"}),
        el("p", {class: "re-sentence", id: sentenceId}),
        el("span", {class: "re-card-buttons"}, moveButton("re-up", "Move up", -1), moveButton("re-down", "Move down", 1), remove)),
      rule.serverErrors.length ? errors : null,
      el("div", {class: "re-card-body"},
        el("div", {class: "re-kind"}, el("label", {for: typeId, text: "Rule"}), typeSelectCard),
        el("div", {class: "re-who"},
          el("div", {class: "re-section-head"}, el("span", {class: "re-label", text: "Who"}), toggle),
          el("div", {class: "re-builder"}),
          el("div", {class: "re-json", hidden: true}, el("label", {for: jsonId, text: "Condition (JSON, GrowthBook's operators)"}), jsonArea),
          el("p", {class: "re-json-note", "aria-live": "polite"})),
        el("div", {class: "re-what"})));
    card.rule = rule;
    card.addEventListener("keydown", (event) => {
      if (event.altKey && (event.key === "ArrowUp" || event.key === "ArrowDown")) { event.preventDefault(); moveCard(rule, event.key === "ArrowUp" ? -1 : 1); }
    });
    rule.card = card;
    renderBuilder(rule);
    renderWhat(rule);
    setMode(rule, rule.mode);
    refresh(rule);
    return card;
  }

  // --- adding and removing ----------------------------------------------------------------------------------------------
  function addRule(environment) {
    const template = document.getElementById(`${PREFIX}-empty`);
    const index = Number(totalForms.value);
    const row = template.cloneNode(true);
    row.id = `${PREFIX}-${index}`;
    row.classList.remove("empty-form");
    for (const node of row.querySelectorAll("[id], [name], [for]")) {
      for (const attribute of ["id", "name", "for"]) {
        const value = node.getAttribute(attribute);
        if (value) { node.setAttribute(attribute, value.replace(/__prefix__/g, String(index))); }
      }
    }
    template.parentElement.insertBefore(row, template);
    totalForms.value = String(index + 1);
    const rule = ruleFromRow(row, index, true);
    rule.environment = environment;
    rule.type = "force";
    rule.valueText = coerce(flagType() === "boolean" ? "true" : "", flagType());
    rules.push(rule);
    const panel = panels.get(environment);
    panel.list.append(buildCard(rule));
    writeAll(rule);
    writePositions();
    rule.card.querySelector(".re-type").focus();
    announce(`Rule ${panel.list.children.length} added to ${panel.name}.`);
    return rule;
  }

  function removeRule(rule) {
    const list = rule.card.parentElement;
    const index = [...list.children].indexOf(rule.card);
    rule.deleted = true;
    const deletion = field(rule, "DELETE");
    if (deletion) { deletion.checked = true; } else { rule.row.append(el("input", {type: "hidden", name: `${PREFIX}-${rule.index}-DELETE`, value: "on"})); }
    rule.card.remove();
    markUnsaved();
    writePositions();
    const next = list.children[Math.min(index, list.children.length - 1)];
    (next ? next.querySelector(".re-remove") : panels.get(rule.environment).add).focus();
    announce("Rule removed; it is deleted when you save.");
  }

  // --- environments as tabs --------------------------------------------------------------------------------------------------
  const panels = new Map();
  const tablist = el("div", {class: "re-tabs", role: "tablist", "aria-label": "Environments"});

  function environmentEnabled(environment) {
    for (const select of document.querySelectorAll('#environment_settings-group select[name$="-environment"]')) {
      if (select.value === environment) {
        const box = select.closest("tr").querySelector('input[name$="-enabled"]');
        return box ? box.checked : null;
      }
    }
    return null;
  }

  function updateTab(panel) {
    const count = panel.list.children.length;
    const enabled = environmentEnabled(panel.id);
    panel.tab.querySelector(".re-tab-count").textContent = `${count} rule${count === 1 ? "" : "s"}`;
    const state = panel.tab.querySelector(".re-tab-state");
    state.textContent = enabled === null ? "" : enabled ? "on" : "off";
    state.className = `re-tab-state ${enabled ? "re-on" : "re-off"}`;
    panel.tab.classList.toggle("re-tab-errors", Boolean(panel.list.querySelector(".re-has-errors")));
  }

  function selectTab(panel, focus) {
    for (const other of panels.values()) {
      const selected = other === panel;
      other.tab.setAttribute("aria-selected", selected ? "true" : "false");
      other.tab.tabIndex = selected ? 0 : -1;
      other.panel.hidden = !selected;
    }
    try { window.sessionStorage.setItem(`rule-editor-tab:${window.location.pathname}`, panel.id); } catch (error) { /* private mode */ }
    if (focus) { panel.tab.focus(); }
  }

  /** "Try it" asks about the environment whose rules are being looked at. */
  function followInTryIt(panel) {
    const select = document.getElementById("try_environment");
    if (select && [...select.options].some((o) => o.value === panel.key)) { select.value = panel.key; }
  }

  const editor = el("div", {class: "rule-editor module", id: "rule-editor"});
  const heading = el("h2", {id: "rule-editor-heading", text: "Rules"});
  const help = el("p", {class: "re-help", text: "In each environment, rules are tried from the top: the first that applies to a user decides what they get; anyone no rule applies to gets the default value. Drag a rule by its handle (or use Move up / Move down, or Alt+Arrow keys) to change the order."});
  editor.setAttribute("aria-labelledby", "rule-editor-heading");
  editor.append(heading, help, unsaved);
  const nonFormErrors = group.querySelector("ul.errorlist.nonform");
  if (nonFormErrors) { editor.append(nonFormErrors.cloneNode(true)); }
  editor.append(tablist);

  for (const environment of data.environments) {
    const id = String(environment.id);
    const tab = el("button", {type: "button", role: "tab", id: `re-tab-${environment.key}`, "aria-controls": `re-panel-${environment.key}`, class: "re-tab"},
      el("span", {class: "re-tab-name", text: environment.name}), " ", el("span", {class: "re-tab-count"}), " ", el("span", {class: "re-tab-state"}));
    const list = el("ol", {class: "re-cards", "aria-label": `Rules in ${environment.name}, in the order they are tried`});
    const empty = el("p", {class: "re-empty", text: `No rules in ${environment.name}: everyone gets the default value (when the flag is on).`});
    const add = el("button", {type: "button", class: "re-add", text: `+ Add a rule in ${environment.name}`, onclick: () => addRule(id)});
    const panel = el("div", {role: "tabpanel", id: `re-panel-${environment.key}`, "aria-labelledby": `re-tab-${environment.key}`, class: "re-panel"}, list, empty, add);
    const entry = {id, key: environment.key, name: environment.name, tab, panel, list, empty, add};
    panels.set(id, entry);
    tab.addEventListener("click", () => { selectTab(entry, false); followInTryIt(entry); });
    tab.addEventListener("keydown", (event) => {
      const order = [...panels.values()];
      const at = order.indexOf(entry);
      const to = {ArrowRight: at + 1, ArrowLeft: at - 1, Home: 0, End: order.length - 1}[event.key];
      if (to === undefined) { return; }
      event.preventDefault();
      const next = order[(to + order.length) % order.length];
      selectTab(next, true);
      followInTryIt(next);
    });
    tablist.append(tab);
    editor.append(panel);
  }
  editor.append(live, el("datalist", {id: "re-attributes"}, data.attributes.map((name) => el("option", {value: name}))));

  // Rows as the server rendered them (after a failed save: what was posted, with the errors).
  const rows = [...group.querySelectorAll("tr.form-row")].filter((row) => !row.classList.contains("empty-form") && /-\d+$/.test(row.id));
  const ordered = rows.map((row) => ruleFromRow(row, Number(row.id.split("-").pop()), !row.classList.contains("has_original")));
  ordered.sort((a, b) => Number(field(a, "position").value || 0) - Number(field(b, "position").value || 0) || a.index - b.index);
  for (const rule of ordered) {
    const deletion = field(rule, "DELETE");
    if (deletion && deletion.checked) { rule.deleted = true; continue; }
    const panel = panels.get(rule.environment) || panels.values().next().value;
    rule.environment = panel.id;
    rules.push(rule);
    panel.list.append(buildCard(rule));
  }

  group.before(editor);
  group.classList.add("rule-editor-source");
  group.hidden = true;
  writePositions();

  let initial = [...panels.values()].find((p) => p.list.querySelector(".re-has-errors"));
  if (!initial) {
    let remembered = null;
    try { remembered = window.sessionStorage.getItem(`rule-editor-tab:${window.location.pathname}`); } catch (error) { /* private mode */ }
    initial = panels.get(remembered) || [...panels.values()].find((p) => environmentEnabled(p.id)) || panels.values().next().value;
  }
  if (initial) { selectTab(initial, false); }
  ready = true;

  document.addEventListener("change", (event) => {
    if (event.target.closest && event.target.closest("#environment_settings-group")) { panels.forEach(updateTab); }
  });
  if (typeSelect) {
    typeSelect.addEventListener("change", () => {
      for (const rule of rules) {
        if (rule.deleted) { continue; }
        rule.valueText = coerce(rule.valueText, flagType());
        for (const key of Object.keys(rule.variantTexts)) { rule.variantTexts[key] = coerce(rule.variantTexts[key], flagType()); }
        writeAll(rule); renderWhat(rule); refresh(rule);
      }
    });
  }

  /** One environment's rules as the cards show them, unsaved, for "try it": {rules} or {error}. */
  function draftRules(environmentKey) {
    const panel = [...panels.values()].find((p) => p.key === environmentKey);
    if (!panel) { return {error: `No environment ${environmentKey}.`}; }
    const draft = [];
    for (const [index, card] of [...panel.list.children].entries()) {
      const rule = card.rule;
      const name = `${panel.name} rule ${index + 1}`;
      const item = {type: rule.type};
      if (rule.mode === "builder") {
        const result = C.toDocument(rule.group);
        if (!result.document) { return {error: `${name} is not finished: ${result.errors[0].message}`}; }
        item.condition = result.document;
      } else {
        const parsed = parseJson(rule.jsonText.trim() || "{}");
        if (parsed.error) { return {error: `${name}: the condition is not valid JSON.`}; }
        item.condition = parsed.value;
      }
      if (rule.type !== "experiment") {
        const parsed = parseJson(rule.valueText);
        if (parsed.error) { return {error: `${name}: the value is not valid JSON.`}; }
        item.value = parsed.value;
      }
      if (rule.type === "rollout") { item.coverage = rule.coverage === "" ? null : Math.round(Number(rule.coverage) * 100) / 10000; }
      if (rule.type === "experiment") {
        const experiment = experiments.get(rule.experiment);
        item.experiment = experiment ? experiment.key : null;
        item.values = {};
        for (const [key, text] of Object.entries(rule.variantTexts)) {
          if (experiment && !experiment.variants.some((v) => v.key === key)) { continue; }
          const parsed = parseJson(text);
          if (parsed.error) { return {error: `${name}: the value for ${key} is not valid JSON.`}; }
          item.values[key] = parsed.value;
        }
      }
      draft.push(item);
    }
    return {rules: draft};
  }
  window.FlagRuleEditor = {draftRules};

  // Unfinished conditions never reach the server as a guess: the save waits until they are complete.
  form.addEventListener("submit", (event) => {
    for (const rule of rules) {
      if (rule.deleted) { continue; }
      let problem = null;
      if (rule.mode === "builder") {
        const result = C.toDocument(rule.group);
        if (result.errors.length) {
          rule.showErrors = true;
          renderBuilder(rule);
          const clause = rule.card.querySelector(".re-clause.re-invalid");
          const attribute = clause && clause.querySelector(".re-attr");
          problem = attribute && attribute.value.trim() ? (clause.querySelector(".re-arg") || attribute) : attribute;
        }
      } else if (parseJson(rule.jsonText.trim() || "{}").error) {
        problem = rule.card.querySelector(".re-json textarea");
      }
      if (!problem && rule.type === "experiment" && !rule.experiment) {
        rule.showErrors = true;
        renderWhat(rule);
        problem = rule.card.querySelector(".re-experiment");
      }
      if (problem) {
        event.preventDefault();
        const panel = panels.get(rule.environment);
        selectTab(panel, false);
        problem.focus();
        const why = rule.card.querySelector(".re-clause-error:not(:empty), .re-experiment-error");
        announce(`${rule.card.querySelector(".re-number").textContent} in ${panel.name} is not finished: ${why ? why.textContent : "its condition is not valid JSON."}`);
        return;
      }
    }
    writePositions();
  });
})();
