/* The flag editor's condition builder, without the page: a condition document (GrowthBook's
 * MongoDB-style targeting, experiments/conditions.py) to a tree of clauses and groups that a form can
 * show, and back.
 *
 * A group is {kind: "and" | "or" | "nor", items: [clause | group]}; the top group is always "and" and
 * is written as one object ({"country": {"$in": ["DE"]}, "plan": "pro"}); a nested group is written
 * as "$and", "$or" or "$nor" with a list of documents, except an "and" group read from one object of
 * such a list ({"$or": [{"plan": "pro", "country": "DE"}, ...]}, marked ``implicit``), written back so. A clause is {attribute, operator, text}: the
 * operator is a key of OPERATORS, the text what the user typed ("DE, FR", "18", "\"42\"").
 *
 * The builder writes only what the evaluator's strict validation accepts: known operators with
 * arguments of the right shape; a clause it cannot complete is an error for the user, never a
 * guessed document. Documents the builder cannot show (``$not``, literal objects, ...) stay JSON.
 * The server validates every condition again when the flag is saved: it is the authority.
 *
 * Used by rule_editor.js in the browser (window.FlagConditions) and by the unit tests under Node
 * (module.exports).
 */
(function (root, factory) {
  "use strict";
  var api = factory();
  if (typeof module === "object" && module.exports) { module.exports = api; } else { root.FlagConditions = api; }
})(this, function () {
  "use strict";

  // argument kinds: scalar (a string, number or boolean), list (comma-separated scalars), ordered (a
  // number, or a string such as an ISO date), text (taken as typed), count (a whole number),
  // type (a JSON type name), none (no argument).
  var OPERATORS = {
    "is": {label: "is equal to", argument: "scalar"},
    "$ne": {label: "is not equal to", argument: "scalar"},
    "$in": {label: "is one of", argument: "list"},
    "$nin": {label: "is not one of", argument: "list"},
    "$ini": {label: "is one of (any case)", argument: "list"},
    "$nini": {label: "is not one of (any case)", argument: "list"},
    "$gt": {label: "is greater than", argument: "ordered"},
    "$gte": {label: "is at least", argument: "ordered"},
    "$lt": {label: "is less than", argument: "ordered"},
    "$lte": {label: "is at most", argument: "ordered"},
    "$exists": {label: "is set", argument: "none"},
    "!$exists": {label: "is not set", argument: "none"},
    "$regex": {label: "matches the pattern", argument: "text"},
    "$regexi": {label: "matches the pattern (any case)", argument: "text"},
    "$veq": {label: "is version", argument: "text"},
    "$vne": {label: "is not version", argument: "text"},
    "$vgt": {label: "is above version", argument: "text"},
    "$vgte": {label: "is at least version", argument: "text"},
    "$vlt": {label: "is below version", argument: "text"},
    "$vlte": {label: "is at most version", argument: "text"},
    "$elemMatch": {label: "contains", argument: "scalar"},
    "$all": {label: "contains all of", argument: "list"},
    "$size": {label: "has a length of", argument: "count"},
    "$type": {label: "is of type", argument: "type"},
    "$eq": {label: "is exactly (same type)", argument: "scalar"}
  };
  var TYPE_NAMES = ["string", "number", "boolean", "array", "object", "null"];
  var GROUP_KINDS = {and: "all", or: "any", nor: "none"};
  var PLACEHOLDERS = {
    scalar: "pro", list: "DE, FR", ordered: "18", text: "", count: "3", type: "", none: ""
  };
  var NUMBER = /^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$/;
  var MAX_GROUP_DEPTH = 3;  // nested groups a user can make (the evaluator allows 10 levels in all)

  function isPlainObject(value) {
    return value !== null && typeof value === "object" && !Array.isArray(value);
  }
  function isScalar(value) {
    return typeof value === "string" || typeof value === "boolean" ||
      (typeof value === "number" && isFinite(value));
  }
  function isOperatorObject(value) {
    if (!isPlainObject(value)) { return false; }
    var keys = Object.keys(value);
    return keys.length > 0 && keys.every(function (key) { return key.charAt(0) === "$"; });
  }

  // --- values as typed -------------------------------------------------------------------------------
  // A typed "42" is the number 42, "true" the boolean; quotes keep text as text: "\"42\"".

  function formatScalar(value, inList) {
    if (typeof value !== "string") { return String(value); }
    var ambiguous = value === "" || value.trim() !== value || NUMBER.test(value) ||
      value === "true" || value === "false" || value === "null" || value.charAt(0) === '"' ||
      (inList && value.indexOf(",") >= 0);
    return ambiguous ? JSON.stringify(value) : value;
  }

  function parseScalar(text, allowBoolean) {
    var trimmed = text.trim();
    if (trimmed.length >= 2 && trimmed.charAt(0) === '"' && trimmed.charAt(trimmed.length - 1) === '"') {
      try { return {value: JSON.parse(trimmed)}; } catch (error) { return {error: "Close the quotes: " + trimmed}; }
    }
    if (trimmed === "") { return {error: "Type a value (\"\" for empty text)."}; }
    if (NUMBER.test(trimmed)) { return {value: Number(trimmed)}; }
    if (allowBoolean && (trimmed === "true" || trimmed === "false")) { return {value: trimmed === "true"}; }
    return {value: trimmed};
  }

  function splitList(text) {
    var items = [], current = "", quoted = false;
    for (var i = 0; i < text.length; i++) {
      var c = text.charAt(i);
      if (c === '"' && text.charAt(i - 1) !== "\\") { quoted = !quoted; }
      if (c === "," && !quoted) { items.push(current); current = ""; } else { current += c; }
    }
    items.push(current);
    return items.filter(function (item) { return item.trim() !== ""; });
  }

  /** Why the server's engine (RE2, linear time) would refuse ``pattern``, where the browser can tell. */
  function patternProblem(pattern) {
    try { new RegExp(pattern); } catch (error) { return "Not a pattern: " + error.message.replace(/^Invalid regular expression: /, ""); }
    if (/\(\?<?[=!]/.test(pattern)) { return "Patterns cannot use lookarounds such as (?=...)."; }
    if (/\\[1-9]|\\k</.test(pattern)) { return "Patterns cannot use back-references such as \\1."; }
    return null;
  }

  // --- clause -> document ------------------------------------------------------------------------------

  /** {document} or {error} for one clause: {attribute: argument} as the evaluator reads it. */
  function clauseDocument(clause) {
    var attribute = (clause.attribute || "").trim();
    var spec = OPERATORS[clause.operator];
    if (!attribute) { return {error: "Name the attribute, e.g. country."}; }
    if (attribute.charAt(0) === "$") { return {error: "An attribute name cannot start with $."}; }
    if (!spec) { return {error: "Pick an operator."}; }
    var text = clause.text == null ? "" : String(clause.text);
    var argument, parsed;
    switch (spec.argument) {
      case "none":
        argument = clause.operator === "$exists";
        break;
      case "scalar":
        parsed = parseScalar(text, true);
        if (parsed.error) { return parsed; }
        argument = parsed.value;
        break;
      case "ordered":
        parsed = parseScalar(text, false);
        if (parsed.error) { return parsed; }
        argument = parsed.value;
        break;
      case "list":
        argument = [];
        var items = splitList(text);
        for (var i = 0; i < items.length; i++) {
          parsed = parseScalar(items[i], true);
          if (parsed.error) { return parsed; }
          argument.push(parsed.value);
        }
        if (!argument.length) { return {error: "List at least one value, separated by commas."}; }
        break;
      case "text":
        if (text.trim() === "") { return {error: clause.operator.indexOf("$regex") === 0 ? "Type a pattern." : "Type a version, e.g. 2.1.0."}; }
        argument = clause.operator.indexOf("$regex") === 0 ? text : text.trim();
        if (clause.operator.indexOf("$regex") === 0) {
          var problem = patternProblem(text);
          if (problem) { return {error: problem}; }
        }
        break;
      case "count":
        if (!/^[0-9]+$/.test(text.trim())) { return {error: "Type a whole number."}; }
        argument = Number(text.trim());
        break;
      case "type":
        if (TYPE_NAMES.indexOf(text) < 0) { return {error: "Pick a type."}; }
        argument = text;
        break;
    }
    var document = {};
    if (clause.operator === "is") {
      document[attribute] = argument;
    } else if (clause.operator === "$elemMatch") {
      document[attribute] = {"$elemMatch": {"$eq": argument}};
    } else {
      var operator = {};
      operator[clause.operator === "!$exists" ? "$exists" : clause.operator] = argument;
      document[attribute] = operator;
    }
    return {document: document};
  }

  /** Documents combined with "and": one object when their keys allow it, else {"$and": [...]}. */
  function mergeAll(documents) {
    var merged = {};
    for (var i = 0; i < documents.length; i++) {
      var keys = Object.keys(documents[i]);
      for (var j = 0; j < keys.length; j++) {
        var key = keys[j], value = documents[i][key];
        if (!(key in merged)) {
          merged[key] = value;
        } else if (isOperatorObject(merged[key]) && isOperatorObject(value) &&
                   Object.keys(value).every(function (op) { return !(op in merged[key]); })) {
          merged[key] = Object.assign({}, merged[key], value);
        } else {
          return {"$and": documents};
        }
      }
    }
    return merged;
  }

  function itemDocument(item, errors, path) {
    if (item.items) { return groupDocument(item, errors, path, false); }
    var result = clauseDocument(item);
    if (result.error) { errors.push({path: path, message: result.error}); return null; }
    return result.document;
  }

  function groupDocument(group, errors, path, top) {
    var documents = [];
    group.items.forEach(function (item, index) {
      var document = itemDocument(item, errors, path.concat(index));
      // An empty nested group says nothing; left out ("$nor": [] would match no one).
      if (document !== null && !(item.items && isPlainObject(document) && Object.keys(document).length === 0)) {
        documents.push(document);
      }
    });
    if (top || (group.implicit && group.kind === "and")) { return mergeAll(documents); }
    if (!documents.length) { return {}; }
    var written = {};
    written["$" + group.kind] = documents;
    return written;
  }

  /** {document, errors}: the top group as a condition document; errors name each unfinished clause by
   * its path of item indexes. */
  function toDocument(group) {
    var errors = [];
    var document = groupDocument(group, errors, [], true);
    return {document: errors.length ? null : document, errors: errors};
  }

  // --- document -> clauses ------------------------------------------------------------------------------

  function Unsupported(message) { this.message = message; }

  function clausesOf(attribute, value) {
    if (isScalar(value)) { return [{attribute: attribute, operator: "is", text: formatScalar(value, false)}]; }
    if (!isOperatorObject(value)) {
      throw new Unsupported(attribute + ": a literal " + (value === null ? "null" : Array.isArray(value) ? "list" : "object"));
    }
    return Object.keys(value).map(function (operator) {
      var argument = value[operator];
      var spec = OPERATORS[operator];
      var clause = {attribute: attribute, operator: operator, text: ""};
      if (operator === "$exists" && typeof argument === "boolean") {
        clause.operator = argument ? "$exists" : "!$exists";
        return clause;
      }
      if (operator === "$elemMatch" && isPlainObject(argument) && Object.keys(argument).length === 1 &&
          isScalar(argument.$eq)) {
        clause.text = formatScalar(argument.$eq, false);
        return clause;
      }
      if (!spec || operator === "$elemMatch" || operator === "$exists") {
        throw new Unsupported(attribute + ": " + operator + (spec ? " in this form" : ""));
      }
      switch (spec.argument) {
        case "scalar":
        case "ordered":
          if (!isScalar(argument) || (spec.argument === "ordered" && typeof argument === "boolean")) {
            throw new Unsupported(attribute + ": " + operator + " with " + JSON.stringify(argument));
          }
          clause.text = formatScalar(argument, false);
          return clause;
        case "list":
          if (!Array.isArray(argument) || !argument.length || !argument.every(isScalar)) {
            throw new Unsupported(attribute + ": " + operator + " with " + JSON.stringify(argument));
          }
          clause.text = argument.map(function (item) { return formatScalar(item, true); }).join(", ");
          return clause;
        case "text":
          if (typeof argument !== "string" || argument.trim() === "") {
            throw new Unsupported(attribute + ": " + operator + " with " + JSON.stringify(argument));
          }
          clause.text = argument;
          return clause;
        case "count":
          if (typeof argument !== "number" || !(argument >= 0) || Math.floor(argument) !== argument) {
            throw new Unsupported(attribute + ": " + operator + " with " + JSON.stringify(argument));
          }
          clause.text = String(argument);
          return clause;
        case "type":
          if (TYPE_NAMES.indexOf(argument) < 0) { throw new Unsupported(attribute + ": $type " + JSON.stringify(argument)); }
          clause.text = argument;
          return clause;
      }
      throw new Unsupported(attribute + ": " + operator);
    });
  }

  function groupOf(document, kind, depth) {
    if (!isPlainObject(document)) { throw new Unsupported("a condition is an object"); }
    // The server refuses documents nested deeper than 10 levels; what it accepted, the builder shows.
    if (depth > 10) { throw new Unsupported("groups nested more than 10 deep"); }
    var group = {kind: kind, items: []};
    Object.keys(document).forEach(function (key) {
      var value = document[key];
      if (key === "$and" || key === "$or" || key === "$nor") {
        if (!Array.isArray(value)) { throw new Unsupported(key + " without a list"); }
        if (!value.length) { throw new Unsupported(key + " with an empty list"); }
        group.items.push({kind: key.slice(1), items: value.map(function (part) {
          var inner = groupOf(part, "and", depth + 1);
          // A document of one clause or group is that item; of several, an "all of" group written
          // back as one object, as it came.
          if (inner.items.length === 1) { return inner.items[0]; }
          inner.implicit = true;
          return inner;
        })});
      } else if (key.charAt(0) === "$") {
        throw new Unsupported(key);
      } else {
        group.items.push.apply(group.items, clausesOf(key, value));
      }
    });
    return group;
  }

  /** {group} the builder can show for ``document``, or {error} saying what it cannot show. */
  function fromDocument(document) {
    try {
      return {group: groupOf(document == null ? {} : document, "and", 1)};
    } catch (error) {
      if (error instanceof Unsupported) { return {error: error.message}; }
      throw error;
    }
  }

  // --- in words ---------------------------------------------------------------------------------------

  function clauseWords(clause) {
    var spec = OPERATORS[clause.operator];
    var attribute = (clause.attribute || "").trim() || "…";
    if (!spec) { return attribute + " …"; }
    if (spec.argument === "none") { return attribute + " " + spec.label; }
    var text = clause.text == null ? "" : String(clause.text).trim();
    return attribute + " " + spec.label + " " + (text || "…");
  }

  function groupWords(group, top) {
    var parts = group.items.map(function (item) {
      return item.items ? groupWords(item, false) : clauseWords(item);
    }).filter(Boolean);
    if (!parts.length) { return ""; }
    if (top) { return parts.join(" and "); }
    var joined = parts.join(group.kind === "and" ? " and " : group.kind === "or" ? " or " : ", ");
    if (group.kind === "nor") { return "none of (" + joined + ")"; }
    return parts.length > 1 ? "(" + joined + ")" : joined;
  }

  /** "country is one of DE, FR and plan is equal to pro" ("" for everyone). */
  function describe(group) { return groupWords(group, true); }

  return {
    OPERATORS: OPERATORS,
    TYPE_NAMES: TYPE_NAMES,
    GROUP_KINDS: GROUP_KINDS,
    PLACEHOLDERS: PLACEHOLDERS,
    MAX_GROUP_DEPTH: MAX_GROUP_DEPTH,
    clauseDocument: clauseDocument,
    toDocument: toDocument,
    fromDocument: fromDocument,
    describe: describe,
    formatScalar: formatScalar
  };
});
