/* The demo page: what the server has indexed, and example questions it answers
 * (GET /api/corpus). Text goes in with textContent; the seed's link is built from its PMID. */
(function () {
  var corpus = document.getElementById("corpus");
  function say(parts) {
    corpus.textContent = "";
    parts.forEach(function (part) { corpus.appendChild(part); });
  }
  function text(value) { return document.createTextNode(value); }
  fetch("/api/corpus").then(function (response) {
    if (!response.ok) throw new Error(String(response.status));
    return response.json();
  }).then(function (info) {
    var years = info.year_from && info.year_to
      ? (info.year_from === info.year_to ? " from " + info.year_from
        : " from " + info.year_from + "–" + info.year_to) : "";
    var parts = [text(info.papers + " PubMed abstracts" + years)];
    if (info.seed) {
      var link = document.createElement("a");
      link.href = "https://pubmed.ncbi.nlm.nih.gov/" + encodeURIComponent(info.seed.pmid) + "/";
      link.textContent = info.seed.title || "PMID " + info.seed.pmid;
      parts.push(text(": the review “"), link, text("”" +
        (info.seed.journal ? " (" + info.seed.journal + (info.seed.year ? ", " + info.seed.year : "") + ")" : "") +
        " and the papers it cites."));
    } else if (info.files && info.files.length) {
      parts.push(text(", read from " + info.files.join(", ") + "."));
    } else {
      parts.push(text("."));
    }
    say(parts);
    var list = document.getElementById("examples");
    (info.examples || []).forEach(function (question) {
      var button = document.createElement("button");
      button.type = "button";
      button.setAttribute("data-carqa-question", question);
      button.textContent = question;
      var item = document.createElement("li");
      item.appendChild(button);
      list.appendChild(item);
    });
    if (list.children.length) {
      document.getElementById("examples-intro").textContent =
        "Open the chat bubble in the corner, or pick an example this corpus answers:";
    }
  }).catch(function () {
    say([text("The server did not say what it has indexed (is the index loaded? see /readyz).")]);
  });
})();
