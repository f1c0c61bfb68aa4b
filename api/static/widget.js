/*
 * carqa chat widget: one <script> tag adds a chat bubble that answers questions about the
 * CAR T cell literature with sentences cited by PubMed ID.
 *
 *   <script src="https://carqa.example/widget.js"
 *           data-endpoint="https://carqa.example"
 *           data-title="Ask the CAR T literature"
 *           data-starters="Why do patients relapse after CD19 CAR T?|What is cytokine release syndrome?"
 *           data-position="right"></script>
 *
 * data-endpoint  base URL of the carqa server (default: where this script was loaded from)
 * data-title     the panel's heading
 * data-starters  example questions, separated by "|" (default: the server's, drawn from
 *                what it has indexed: GET /api/corpus)
 * data-position  "right" (default) or "left"
 * data-open      "true" to start with the panel open
 * data-api-key   sent as X-API-Key, for servers started with CARQA_API_KEYS
 * data-relation  only papers with these relations to the seed review, separated by "|":
 *                seed, cited, citing (what came after the review), similar, file
 * data-type      only papers of these PubMed publication types, separated by "|"
 *                (e.g. "Randomized Controlled Trial|Meta-Analysis")
 * data-id        the id of the widget's host element (a letter, then letters, digits, "-"
 *                and "_"); default: the first free one of carqa-widget, carqa-widget-2, ...
 *
 * Design rules: no framework, no build step, no request to anyone but the endpoint. Everything
 * lives in a Shadow DOM so the host page's CSS cannot break it (nor it the page's). Every piece
 * of text from the server is inserted with textContent, never as HTML: an abstract containing
 * "<img src=x onerror=...>" shows exactly those characters. Links are built from the PMID, never
 * taken from the response. The conversation (session id and transcript) is kept in
 * localStorage, so a page reload continues it. Elements with a data-carqa-question attribute
 * anywhere on the page ask their question when clicked. Each stream event is re-dispatched on
 * the widget's host element (#carqa-widget) as a "carqa:event" CustomEvent ({type, data}), for
 * pages that want to react to answers.
 *
 * Several widgets on one page (other carqa servers, or the same one with another
 * data-position) work independently: each has its own host element id (so a single widget is
 * still #carqa-widget, a second one #carqa-widget-2), conversation and events. A widget
 * stores its conversation under "carqa:<endpoint>", or "carqa:<endpoint>#<id>" when its id is
 * not carqa-widget. window.carqa controls the first widget loaded and window.carqaWidgets
 * lists them all ({id, endpoint, position, element, open, close, ask, reset}). A
 * data-carqa-question element asks the first widget, or the one whose id its
 * data-carqa-widget attribute names. A second tag with the same endpoint and position and no
 * data-id is the same tag loaded twice: it adds nothing.
 *
 * Why one file of over 600 lines: it is served as one embeddable script. A host page adds a single
 * <script> tag, with no build step, no module loader and no second request (each extra file
 * would be another URL the page's Content-Security-Policy must allow and another chance of
 * a version mismatch between pieces). Its parts run in one closure sharing one widget's
 * state, in this order: settings from the tag, storage, the shadow DOM and its styles, the
 * corpus description and starters, rendering of turns, asking and reading the stream, opening
 * and closing, then mounting.
 */
(function () {
  "use strict";

  var script = document.currentScript;
  if (!script) return;
  var data = script.dataset;
  var scriptOrigin = new URL(script.src, document.baseURI).origin;
  var endpoint = (data.endpoint || scriptOrigin).replace(/\/+$/, "");
  var title = data.title || "Ask the indexed literature";
  var starters = (data.starters || "")
    .split("|")
    .map(function (s) { return s.trim(); })
    .filter(Boolean);
  var position = data.position === "left" ? "left" : "right";
  var apiKey = data.apiKey || "";
  function pipeList(text) {
    return (text || "").split("|").map(function (s) { return s.trim(); }).filter(Boolean);
  }
  var filters = {};
  if (pipeList(data.relation).length) filters.relations = pipeList(data.relation);
  if (pipeList(data.type).length) filters.publication_types = pipeList(data.type);
  // What kind of evidence a source is, the most telling PubMed publication type first; the
  // same table as carqa.qa.types.EVIDENCE_KINDS.
  var EVIDENCE_KINDS = [["Meta-Analysis", "meta-analysis"], ["Systematic Review", "systematic review"],
    ["Randomized Controlled Trial", "randomized trial"], ["Clinical Trial, Phase IV", "phase IV trial"],
    ["Clinical Trial, Phase III", "phase III trial"], ["Clinical Trial, Phase II", "phase II trial"],
    ["Clinical Trial, Phase I", "phase I trial"], ["Clinical Trial", "clinical trial"],
    ["Practice Guideline", "guideline"], ["Guideline", "guideline"],
    ["Observational Study", "observational study"], ["Case Reports", "case report"],
    ["Review", "review"], ["Editorial", "editorial"], ["Letter", "letter"], ["Comment", "comment"]];
  var RELATION_PHRASES = { seed: "the review", cited: "cited by the review",
    citing: "cites the review", similar: "similar to the review" };
  /** "phase II trial · cites the review · 2021": what kind of evidence a citation is. */
  function evidenceLabel(c) {
    var types = (c.publication_types || []).map(function (t) { return String(t).toLowerCase(); });
    var kind = null;
    for (var i = 0; i < EVIDENCE_KINDS.length && !kind; i++) {
      if (types.indexOf(EVIDENCE_KINDS[i][0].toLowerCase()) >= 0) kind = EVIDENCE_KINDS[i][1];
    }
    return [kind, RELATION_PHRASES[c.relation] || null, c.year ? String(c.year) : null]
      .filter(Boolean).join(" \u00b7 ");
  }
  var MAX_TURNS = 50;
  var ABSTAIN_TEXT = "Not answered by the indexed literature.";
  // Text that is not blank: one character that is neither whitespace nor invisible. The
  // server's rule, copied from qa/blank.py (NOT_BLANK_PATTERN; a test keeps the two equal), so
  // a question of zero-width spaces is ignored here like one of spaces, not sent to get a 422.
  var VISIBLE = /[^\u0000-\u0020\u007f-\u00a0\u00ad\u034f\u061c\u115f-\u1160\u1680\u17b4-\u17b5\u180b-\u180f\u2000-\u200f\u2028-\u202f\u205f-\u206f\u3000\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff0-\ufffb]/;

  // ---- this widget among the others on the page ------------------------------------------
  // Everything shared between widgets goes through this list; all other state is this
  // closure's own.
  var widgets = window.carqaWidgets = window.carqaWidgets || [];
  var requestedId = /^[A-Za-z][A-Za-z0-9_-]*$/.test(data.id || "") ? data.id : "";
  var twin = widgets.some(function (w) { return w.endpoint === endpoint && w.position === position; });
  if (twin && !requestedId) return; // the same tag loaded twice: both would sit in one spot
  function taken(id) {
    return document.getElementById(id) || widgets.some(function (w) { return w.id === id; });
  }
  var widgetId = requestedId && !taken(requestedId) ? requestedId : "carqa-widget";
  for (var n = 2; taken(widgetId); n++) widgetId = "carqa-widget-" + n;
  // The first widget keeps the key it always had, so its saved conversation carries on.
  var storageKey = "carqa:" + endpoint + (widgetId === "carqa-widget" ? "" : "#" + widgetId);

  // ---- storage -----------------------------------------------------------------------------
  function load() {
    try {
      var saved = JSON.parse(localStorage.getItem(storageKey) || "null");
      if (saved && Array.isArray(saved.turns)) return saved;
    } catch (e) { /* private mode or corrupt entry: start fresh */ }
    return { sessionId: null, turns: [] };
  }
  function save() {
    try {
      state.turns = state.turns.slice(-MAX_TURNS);
      localStorage.setItem(storageKey, JSON.stringify(state));
    } catch (e) { /* storage full or disabled: the conversation just won't survive a reload */ }
  }
  var state = load();

  // ---- DOM helpers -------------------------------------------------------------------------
  // Bidi controls that reorder the text after them (embeddings, overrides, isolates): a title
  // holding U+202E showed reversed. Invented for display, never part of what a paper says.
  var BIDI_CONTROLS = /[\u202A-\u202E\u2066-\u2069]/g;
  function plain(text) { return String(text == null ? "" : text).replace(BIDI_CONTROLS, ""); }

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (name) {
      if (name === "text") node.textContent = plain(attrs[name]);
      else if (name === "className") node.className = attrs[name];
      else node.setAttribute(name, attrs[name]);
    });
    (children || []).forEach(function (child) { if (child) node.appendChild(child); });
    return node;
  }
  function pubmedUrl(pmid) {
    return "https://pubmed.ncbi.nlm.nih.gov/" + encodeURIComponent(String(pmid)) + "/";
  }
  function icon(pathData) {
    var ns = "http://www.w3.org/2000/svg";
    var svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", "0 0 24 24");
    svg.setAttribute("width", "26");
    svg.setAttribute("height", "26");
    svg.setAttribute("aria-hidden", "true");
    svg.setAttribute("focusable", "false");
    var path = document.createElementNS(ns, "path");
    path.setAttribute("d", pathData);
    path.setAttribute("fill", "currentColor");
    svg.appendChild(path);
    return svg;
  }

  var CSS = [
    ":host { all: initial; }",
    "* { box-sizing: border-box; }",
    "[hidden] { display: none !important; }",
    ".root { position: fixed; bottom: 20px; " + position + ": 20px; z-index: 2147483000;",
    "  font: 15px/1.45 system-ui, -apple-system, 'Segoe UI', Roboto, Arial, sans-serif; color: #1a1a1a; }",
    "button { font: inherit; cursor: pointer; }",
    ".launcher { width: 58px; height: 58px; border-radius: 50%; border: none; background: #0b5394;",
    "  color: #fff; box-shadow: 0 4px 14px rgba(0,0,0,.3); display: flex; align-items: center;",
    "  justify-content: center; margin-" + position + ": 0; margin-left: auto; }",
    ".launcher:hover { background: #073763; }",
    ":focus-visible { outline: 3px solid #f1a208; outline-offset: 2px; }",
    ".panel { width: min(400px, calc(100vw - 40px)); height: min(600px, calc(100vh - 110px));",
    "  background: #fff; border-radius: 12px; box-shadow: 0 8px 30px rgba(0,0,0,.3);",
    "  display: flex; flex-direction: column; overflow: hidden; margin-bottom: 12px; }",
    ".panel[hidden] { display: none; }",
    ".head { display: flex; align-items: center; gap: 6px; padding: 10px 12px; background: #0b5394; color: #fff; }",
    ".head h2 { font-size: 16px; margin: 0; flex: 1; font-weight: 600; }",
    ".head button { background: transparent; color: #fff; border: 1px solid rgba(255,255,255,.6);",
    "  border-radius: 6px; padding: 2px 8px; font-size: 13px; }",
    ".head button.close { font-size: 20px; line-height: 1; padding: 0 8px 2px; }",
    ".log { flex: 1; overflow-y: auto; padding: 12px; background: #f6f7f9; }",
    ".msg { margin: 0 0 12px; padding: 8px 10px; border-radius: 10px; max-width: 92%; overflow-wrap: anywhere; }",
    ".msg.user { background: #0b5394; color: #fff; margin-left: auto; white-space: pre-wrap; }",
    ".msg.bot { background: #fff; border: 1px solid #d8dce3; }",
    ".msg.error { background: #fdecea; border: 1px solid #e0a39c; color: #611a15; }",
    ".sources-title { font-size: 12px; font-weight: 600; text-transform: uppercase; letter-spacing: .04em;",
    "  color: #4a4f57; margin: 0 0 4px; }",
    ".sources { list-style: none; margin: 0 0 8px; padding: 0; font-size: 13px; }",
    ".sources li { margin: 0 0 6px; padding-left: 4px; border-left: 3px solid #b7c9e2; }",
    ".sources .quote { display: block; color: #333; }",
    ".sources .meta { display: block; color: #4a4f57; font-size: 12px; }",
    ".sources .kind { display: block; color: #4a4f57; font-size: 11px; font-style: italic; }",
    "a { color: #0b5394; }",
    ".answer { margin: 0; white-space: pre-wrap; }",
    ".answer a.cite { font-size: 12px; vertical-align: super; text-decoration: none; padding: 0 1px; }",
    ".answer a.cite:hover, .answer a.cite:focus { text-decoration: underline; }",
    ".abstain { margin: 0; font-weight: 600; color: #6b3d00; }",
    ".abstain-why { margin: 4px 0 0; color: #4a4f57; font-size: 13px; }",
    ".note { margin: 6px 0 0; padding: 4px 6px; background: #fff6e0; border-radius: 6px;",
    "  color: #5c3b00; font-size: 13px; }",
    ".focus { margin: 6px 0 0; color: #4a4f57; font-size: 13px; }",
    ".about { margin: 0; padding: 8px 12px 0; background: #f6f7f9; color: #4a4f57; font-size: 12px; }",
    ".starters { display: flex; flex-wrap: wrap; gap: 6px; padding: 8px 12px 0; background: #f6f7f9; }",
    ".starters button { background: #fff; color: #0b5394; border: 1px solid #0b5394; border-radius: 14px;",
    "  padding: 3px 10px; font-size: 13px; text-align: left; }",
    ".status { min-height: 18px; font-size: 12px; color: #4a4f57; padding: 2px 12px; background: #f6f7f9; }",
    "form { display: flex; gap: 6px; padding: 10px 12px; border-top: 1px solid #d8dce3; background: #fff; }",
    "textarea { flex: 1; resize: none; font: inherit; padding: 6px 8px; border: 1px solid #767b84;",
    "  border-radius: 8px; min-height: 40px; max-height: 120px; color: #1a1a1a; background: #fff; }",
    "form button { border: none; background: #0b5394; color: #fff; border-radius: 8px; padding: 0 14px; }",
    "form button[disabled] { background: #5d6b7a; cursor: default; }",
    ".sr-only { position: absolute; width: 1px; height: 1px; padding: 0; margin: -1px; overflow: hidden;",
    "  clip: rect(0,0,0,0); white-space: nowrap; border: 0; }",
  ].join("\n");

  // ---- the widget's DOM --------------------------------------------------------------------
  var host = el("div", { id: widgetId });
  var shadow = host.attachShadow({ mode: "open" });
  // Ids for aria references inside the shadow root (which scopes them already), named after
  // the host rather than at random: distinct between widgets, and the same on every load.
  var uid = widgetId;

  var heading = el("h2", { id: uid + "-title", text: title });
  var newButton = el("button", { type: "button", className: "new", text: "New chat",
    "aria-label": "Start a new conversation" });
  var closeButton = el("button", { type: "button", className: "close", text: "\u00d7",
    "aria-label": "Close chat" });
  var log = el("div", { className: "log", role: "log", "aria-live": "polite",
    "aria-label": "Conversation", tabindex: "0" });
  var startersBox = el("div", { className: "starters", role: "group", "aria-label": "Example questions" });
  var about = el("p", { className: "about", hidden: "" }); // what the server has indexed
  var status = el("div", { className: "status", role: "status", "aria-live": "polite" });
  // No maxlength: the browser would cut a pasted question short without a word. The limit is
  // the server's (CARQA_MAX_QUESTION_CHARS); its 422 says how long is too long.
  var input = el("textarea", { id: uid + "-input", rows: "1",
    placeholder: "Ask a question\u2026" });
  var label = el("label", { "for": uid + "-input", className: "sr-only", text: "Your question" });
  var sendButton = el("button", { type: "submit", text: "Send", "aria-label": "Send question" });
  var form = el("form", {}, [label, input, sendButton]);
  var panel = el("section", { className: "panel", role: "dialog", "aria-modal": "false",
    "aria-labelledby": uid + "-title", id: uid + "-panel", hidden: "" },
    [el("div", { className: "head" }, [heading, newButton, closeButton]),
     log, about, startersBox, status, form]);
  var launcher = el("button", { type: "button", className: "launcher", "aria-label": "Open chat: " + title,
    "aria-expanded": "false", "aria-controls": uid + "-panel" },
    [icon("M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H8l-4 4V6a2 2 0 0 1 2-2z")]);
  shadow.appendChild(el("style", { text: CSS }));
  shadow.appendChild(el("div", { className: "root" }, [panel, launcher]));

  function showStarters(questions) {
    startersBox.textContent = "";
    questions.forEach(function (question) {
      var button = el("button", { type: "button", text: question });
      button.addEventListener("click", function () { ask(question); });
      startersBox.appendChild(button);
    });
  }
  showStarters(starters);

  /** What the server has indexed, in one line ("1000 PubMed abstracts, 1989-2017, from
   *  corpus.jsonl"); and its example questions when the page gave none. */
  function describeCorpus(info) {
    if (!info || typeof info.papers !== "number") return "";
    var years = info.year_from && info.year_to
      ? (info.year_from === info.year_to ? " from " + info.year_from
        : ", " + info.year_from + "\u2013" + info.year_to) : "";
    var from = info.seed && info.seed.title ? ": the review \u201c" + info.seed.title + "\u201d and the papers it cites"
      : (info.files && info.files.length ? ", from " + info.files.join(", ") : "");
    return "Answers from " + info.papers + " PubMed abstracts" + years + from + ".";
  }
  function loadCorpus() {
    var headers = {};
    if (apiKey) headers["X-API-Key"] = apiKey;
    fetch(endpoint + "/api/corpus", { headers: headers, credentials: "omit" })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (info) {
        if (!info) return;
        about.textContent = describeCorpus(info);
        about.hidden = !about.textContent || state.turns.length > 0;
        if (!starters.length && Array.isArray(info.examples)) {
          starters = info.examples.slice(0, 3).map(String);
          showStarters(starters);
        }
        host.dispatchEvent(new CustomEvent("carqa:corpus", { detail: info }));
      })
      .catch(function () { /* an older server, or offline: the widget works without it */ });
  }

  // ---- rendering ---------------------------------------------------------------------------
  function renderUser(text) {
    log.appendChild(el("div", { className: "msg user" }, [
      el("span", { className: "sr-only", text: "You: " }), document.createTextNode(text)]));
  }

  function citationLink(n, citation) {
    var link = el("a", { className: "cite", href: pubmedUrl(citation.pmid), target: "_blank",
      rel: "noopener noreferrer", text: "[" + n + "]",
      "aria-label": "Source " + n + ": PubMed " + citation.pmid });
    return link;
  }

  /** Fill `node` with an answer: `content` is the server's `segments` (text, then the numbers
   *  it cites), whose citations become links to the cited paper on PubMed; or, while an answer
   *  streams in (and for turns saved without segments), plain text. Links are never found by
   *  searching the text for [n]: an abstract's own "[1]" is text. */
  function renderAnswerText(node, content, citations) {
    var byN = {};
    (citations || []).forEach(function (c) { byN[c.n] = c; });
    node.textContent = "";
    if (!Array.isArray(content)) {
      node.appendChild(document.createTextNode(plain(content)));
      return;
    }
    content.forEach(function (segment) {
      if (segment.text) node.appendChild(document.createTextNode(plain(segment.text)));
      (segment.citations || []).forEach(function (n) {
        if (byN[n]) node.appendChild(citationLink(n, byN[n]));
      });
    });
  }

  /** A paper's name for its source line: its title, else its journal, else the first words
   *  of the quoted sentence ("Untitled" told the reader nothing). */
  function paperName(c) {
    if (c.title) return c.title;
    if (c.journal) return c.journal;
    var words = String(c.text || "").split(/\s+/).filter(Boolean);
    return words.length ? words.slice(0, 8).join(" ") + (words.length > 8 ? "\u2026" : "") : "PubMed " + c.pmid;
  }

  /** Once the answer is complete, a source whose sentence the answer already quotes keeps
   *  only its title line: an extractive answer is made of those sentences, and showing each
   *  twice (under Sources and as the answer) doubled the reading. */
  function compactSources(view, answerText) {
    // Compared without the [n] markers (placed before a sentence's final stop) and without
    // that stop.
    var answer = String(answerText || "").replace(/\s*\[\d+\]/g, "").replace(/\s+/g, " ");
    view.sources.querySelectorAll(".quote").forEach(function (quote) {
      var text = quote.textContent.replace(/\s+/g, " ").trim().replace(/[.;:!?]+$/, "");
      if (text && answer.indexOf(text) >= 0) quote.remove();
    });
  }

  function renderSources(box, citations) {
    if (!citations || !citations.length) return;
    box.appendChild(el("p", { className: "sources-title", text: "Sources" }));
    var list = el("ol", { className: "sources", "aria-label": "Sources" });
    citations.forEach(function (c) {
      var meta = [paperName(c), c.year ? "(" + c.year + ")" : "", "PMID " + c.pmid]
        .filter(Boolean).join(" ");
      var link = el("a", { href: pubmedUrl(c.pmid), target: "_blank", rel: "noopener noreferrer",
        text: "[" + c.n + "] " + meta });
      var kind = evidenceLabel(c);
      list.appendChild(el("li", {}, [
        el("span", { className: "meta" }, [link]),
        kind ? el("span", { className: "kind", text: kind }) : null,
        el("span", { className: "quote", text: c.text })].filter(Boolean)));
    });
    box.appendChild(list);
  }

  /** An assistant message; returns handles to update it while the answer streams in. */
  function botMessage() {
    var box = el("div", { className: "msg bot" }, [el("span", { className: "sr-only", text: "carqa: " })]);
    var sources = el("div", { className: "sources-box" });
    var answer = el("p", { className: "answer" });
    box.appendChild(sources);
    box.appendChild(answer);
    log.appendChild(box);
    return { box: box, sources: sources, answer: answer };
  }

  /** A note the server attached to an answer (the session had expired, citations were
   *  removed...): it changes how the answer must be read, so it is shown, not dropped. */
  function renderNote(view, message) {
    if (message) view.box.appendChild(el("p", { className: "note", text: message }));
  }

  /** Which papers a follow-up was answered from, when it asked about the papers just
   *  discussed ("how many patients were included?"): the reply's focus_pmids. */
  function renderFocus(view, focus) {
    if (!focus || !focus.length) return;
    var papers = focus.map(function (pmid) { return "PMID " + pmid; }).join(", ");
    view.box.appendChild(el("p", { className: "focus", text: "From the papers discussed: " + papers }));
  }

  function renderAbstention(view, message) {
    view.answer.remove();
    view.box.appendChild(el("p", { className: "abstain", text: ABSTAIN_TEXT }));
    if (message) view.box.appendChild(el("p", { className: "abstain-why", text: message }));
  }

  // A finished turn's body, the same whether restored from storage or just streamed: an
  // abstention's message, or the answer with its focus line and note, sources it quotes compacted.
  function renderOutcome(view, turn) {
    if (turn.abstained) {
      renderAbstention(view, turn.message);
      return;
    }
    renderAnswerText(view.answer, turn.segments || turn.text, turn.citations);
    renderFocus(view, turn.focus);
    renderNote(view, turn.message);
    compactSources(view, turn.text);
  }

  function renderBot(turn) {
    var view = botMessage();
    if (turn.error) {
      view.box.className = "msg error";
      view.box.setAttribute("role", "alert");
      view.answer.textContent = turn.error;
      return view;
    }
    renderSources(view.sources, turn.citations);
    renderOutcome(view, turn);
    return view;
  }

  function scrollDown() { log.scrollTop = log.scrollHeight; }

  function restore() {
    state.turns.forEach(function (turn) {
      if (turn.role === "user") renderUser(turn.text);
      else renderBot(turn);
    });
    startersBox.hidden = state.turns.length > 0;
    scrollDown();
  }

  // ---- talking to the server ---------------------------------------------------------------
  /** Parse Server-Sent Events from a fetch() body; calls onEvent(name, parsedData) per frame. */
  async function readEvents(response, onEvent) {
    var reader = response.body.getReader();
    var decoder = new TextDecoder();
    var buffer = "";
    function dispatch(frame) {
      var name = "message";
      var lines = [];
      frame.split(/\r\n|\r|\n/).forEach(function (line) {
        if (!line || line.charAt(0) === ":") return; // comment / keep-alive ping
        var colon = line.indexOf(":");
        var field = colon < 0 ? line : line.slice(0, colon);
        var value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (field === "event") name = value;
        else if (field === "data") lines.push(value);
      });
      if (lines.length) onEvent(name, JSON.parse(lines.join("\n")));
    }
    for (;;) {
      var chunk = await reader.read();
      if (chunk.done) break;
      buffer += decoder.decode(chunk.value, { stream: true });
      var frames = buffer.split(/\r\n\r\n|\n\n|\r\r/);
      buffer = frames.pop();
      frames.forEach(dispatch);
    }
    buffer += decoder.decode();
    if (buffer.trim()) dispatch(buffer);
  }

  // The server's {"error": {message, hint}} as one line: a JSON error response and an SSE
  // "error" event alike, so a failure mid-answer shows its advice too ("Try again later").
  function describeError(error) {
    if (!error || !error.message) return null;
    return error.message + (error.hint ? " " + error.hint : "");
  }

  async function errorMessage(response) {
    try {
      var body = await response.json();
      var described = describeError(body && body.error);
      if (described) return described;
    } catch (e) { /* not JSON */ }
    return "The server answered with status " + response.status + ".";
  }

  var busy = false;
  var inflight = null; // the AbortController of the answer being received, if any

  /** Back to idle: the send button enabled, no status. */
  function idle() {
    busy = false;
    sendButton.disabled = false;
    status.textContent = "";
  }

  async function ask(question) {
    question = String(question || "").trim();
    if (!VISIBLE.test(question) || busy) return;
    open();
    busy = true;
    var controller = new AbortController();
    inflight = controller;
    sendButton.disabled = true;
    startersBox.hidden = true;
    about.hidden = true;
    input.value = "";
    renderUser(question);
    state.turns.push({ role: "user", text: question });
    save();
    status.textContent = "Searching the literature\u2026";
    scrollDown();

    var view = botMessage();
    // While the answer streams in, each piece re-renders it inside the live log: busy tells a
    // screen reader to wait for the whole answer instead of reading every version of it.
    view.box.setAttribute("aria-busy", "true");
    var turn = { role: "bot", text: "", citations: [], abstained: false, message: null };
    try {
      var headers = { "Content-Type": "application/json", "Accept": "text/event-stream" };
      if (apiKey) headers["X-API-Key"] = apiKey;
      var body = { message: question, stream: true };
      if (filters.relations || filters.publication_types) body.filters = filters;
      if (state.sessionId) body.session_id = state.sessionId;
      var response = await fetch(endpoint + "/api/chat", {
        method: "POST", headers: headers, body: JSON.stringify(body), credentials: "omit",
        signal: controller.signal });
      if (!response.ok) throw new Error(await errorMessage(response));
      var finished = false;
      await readEvents(response, function (name, payload) {
        host.dispatchEvent(new CustomEvent("carqa:event", { detail: { type: name, data: payload } }));
        if (name === "sources") {
          turn.citations = payload.citations || [];
          renderSources(view.sources, turn.citations);
          status.textContent = turn.citations.length ? "Writing the answer\u2026" : "";
        } else if (name === "delta") {
          turn.text += payload.text || "";
          renderAnswerText(view.answer, turn.text, turn.citations);
        } else if (name === "done") {
          finished = true;
          turn.text = payload.answer || "";
          turn.segments = payload.segments || null;
          turn.citations = payload.citations || turn.citations;
          turn.abstained = !!payload.abstained;
          turn.message = payload.message || null;
          turn.focus = payload.focus_pmids || [];
          if (payload.session_id) state.sessionId = payload.session_id;
          renderOutcome(view, turn);
        } else if (name === "error") {
          throw new Error(describeError(payload.error) || "The answer failed.");
        }
        scrollDown();
      });
      if (!finished) throw new Error("The connection closed before the answer was complete.");
    } catch (error) {
      if (controller.signal.aborted) return; // "New chat" was pressed: this answer is dropped
      view.box.remove();
      turn = { role: "bot", error: "Sorry, something went wrong: " +
        (error && error.message ? error.message : String(error)) };
      renderBot(turn);
      if (!input.value) input.value = question; // to shorten it, or send it again
    } finally {
      view.box.removeAttribute("aria-busy");
      if (!controller.signal.aborted) {
        inflight = null;
        state.turns.push(turn);
        save();
        idle();
        scrollDown();
        input.focus();
      }
    }
  }

  // ---- opening, closing, keyboard ----------------------------------------------------------
  function open() {
    if (!panel.hidden) return;
    panel.hidden = false;
    launcher.setAttribute("aria-expanded", "true");
    launcher.setAttribute("aria-label", "Close chat: " + title);
    scrollDown();
    input.focus();
  }
  function close() {
    if (panel.hidden) return;
    panel.hidden = true;
    launcher.setAttribute("aria-expanded", "false");
    launcher.setAttribute("aria-label", "Open chat: " + title);
    launcher.focus();
  }
  /** A new conversation. An answer still arriving belongs to the old one: it is cancelled, so
   *  neither it nor its session id can land in the new conversation. */
  function reset() {
    if (inflight) inflight.abort();
    inflight = null;
    idle();
    state = { sessionId: null, turns: [] };
    save();
    log.textContent = "";
    startersBox.hidden = false;
    about.hidden = !about.textContent;
    input.focus();
  }

  launcher.addEventListener("click", function () { panel.hidden ? open() : close(); });
  closeButton.addEventListener("click", close);
  newButton.addEventListener("click", reset);
  form.addEventListener("submit", function (event) { event.preventDefault(); ask(input.value); });
  input.addEventListener("keydown", function (event) {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      ask(input.value);
    }
  });
  shadow.addEventListener("keydown", function (event) {
    if (event.key === "Escape") { event.stopPropagation(); close(); }
  });
  document.addEventListener("click", function (event) {
    var target = event.target && event.target.closest && event.target.closest("[data-carqa-question]");
    if (!target) return;
    var named = target.getAttribute("data-carqa-widget");
    if (named ? named !== widgetId : widgets[0] !== controls) return; // another widget's
    event.preventDefault();
    ask(target.getAttribute("data-carqa-question"));
  });

  function mount() {
    document.body.appendChild(host);
    restore();
    loadCorpus();
    if (data.open === "true") open();
  }
  if (document.body) mount();
  else document.addEventListener("DOMContentLoaded", mount);

  var controls = { id: widgetId, endpoint: endpoint, position: position, element: host,
    open: open, close: close, ask: ask, reset: reset };
  widgets.push(controls);
  if (widgets[0] === controls) window.carqa = controls;
})();
