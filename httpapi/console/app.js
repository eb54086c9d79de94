// onboard operator console.
//
// Plain JavaScript, no build step, no dependency: it talks to the JSON API of
// the server that served it, with the operator's API key from sessionStorage,
// and refreshes the visible view every two seconds. Data from the API is only
// ever put into the page as text (textContent), never as markup.
"use strict";

(() => {
  const POLL_MS = 2000;
  const KEY_STORAGE = "onboard.apiKey";
  const STATES = ["pending", "verifying", "verified", "provisioning", "paused", "active", "rejected", "cancelling", "cancelled"];
  const STEPS = ["verification", "billing", "tenant", "crm", "welcome"];
  const TERMINAL = new Set(["active", "rejected", "cancelled"]);
  const SKIPPABLE = new Set(["crm", "welcome"]);
  const OLD_PAUSE_SECONDS = 15 * 60;

  const $ = (id) => document.getElementById(id);

  // h builds an element: h("a", {href: "#/", class: "x"}, "text", child).
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "class") el.className = v;
      else if (k === "text") el.textContent = v;
      else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
      else if (k === "dataset") Object.assign(el.dataset, v);
      else el.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children.flat()) {
      if (c === undefined || c === null || c === false) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  }

  // ---- API -------------------------------------------------------------

  class APIError extends Error {
    constructor(status, problem) {
      const title = (problem && (problem.title || problem.type)) || ("HTTP " + status);
      super(problem && problem.detail ? title + ": " + problem.detail : title);
      this.status = status;
      this.problem = problem || {};
    }
  }

  function apiKey() { return sessionStorage.getItem(KEY_STORAGE) || ""; }

  // randomKey makes an Idempotency-Key. crypto.randomUUID needs a secure
  // context, which a console reached over plain HTTP on a LAN is not.
  function randomKey() {
    const b = new Uint8Array(16);
    crypto.getRandomValues(b);
    return "console-" + Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  }

  async function api(method, path, {body, headers, signal} = {}) {
    const h2 = {"Accept": "application/json, application/problem+json", "Authorization": "Bearer " + apiKey(), ...headers};
    const init = {method, headers: h2, signal, cache: "no-store", credentials: "omit"};
    if (body !== undefined) {
      h2["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    // Relative to the page, so the console also works behind a path prefix.
    const res = await fetch(path.replace(/^\//, ""), init);
    const text = await res.text();
    let data = null;
    if (text) {
      try { data = JSON.parse(text); } catch { data = {detail: text.slice(0, 200)}; }
    }
    if (!res.ok) {
      const err = new APIError(res.status, data);
      if (res.status === 401) onUnauthorized(err);
      throw err;
    }
    return data;
  }

  // The query API pages lists as objects; accept a bare array too.
  function listOf(body) {
    if (Array.isArray(body)) return body;
    if (!body || typeof body !== "object") return [];
    for (const k of ["items", "customers", "entries", "queue", "events", "data"]) {
      if (Array.isArray(body[k])) return body[k];
    }
    return [];
  }
  function nextCursorOf(body) {
    if (!body || Array.isArray(body)) return "";
    const c = body.next_cursor ?? body.next ?? body.cursor ?? (body.page && body.page.next_cursor);
    return c ? String(c) : "";
  }

  // ---- formatting --------------------------------------------------------

  function fmtTime(iso) {
    if (!iso) return "";
    const d = new Date(iso);
    if (isNaN(d)) return String(iso);
    return d.toLocaleString(undefined, {year: "numeric", month: "short", day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit"});
  }
  function fmtDuration(seconds) {
    if (!isFinite(seconds) || seconds < 0) return "";
    seconds = Math.round(seconds);
    if (seconds < 60) return seconds + "s";
    const m = Math.floor(seconds / 60), s = seconds % 60;
    if (m < 60) return m + "m " + s + "s";
    const hr = Math.floor(m / 60);
    if (hr < 48) return hr + "h " + (m % 60) + "m";
    return Math.floor(hr / 24) + "d " + (hr % 24) + "h";
  }
  function ageSeconds(iso) {
    const t = Date.parse(iso);
    return isNaN(t) ? NaN : (Date.now() - t) / 1000;
  }
  function stateBadge(state) {
    return h("span", {class: "state s-" + (state || "unknown"), text: state || "?"});
  }
  function shortType(type) {
    return String(type || "").replace(/^customer\./, "").replace(/\.v\d+$/, "").replace(/_/g, " ");
  }
  function customerLink(c) {
    return h("a", {href: "#/customers/" + encodeURIComponent(c.id), class: "who"},
      h("div", {text: c.company || c.id}), h("div", {class: "email", text: c.email || ""}));
  }

  // ---- toasts and status -------------------------------------------------

  function toast(message, bad) {
    const t = h("div", {class: "toast" + (bad ? " bad" : ""), text: message});
    $("toasts").append(t);
    setTimeout(() => t.remove(), bad ? 8000 : 4000);
  }
  function setLive(state, text) {
    $("live").dataset.state = state;
    $("updated").textContent = text;
  }

  // ---- key ------------------------------------------------------------------

  function onUnauthorized(err) {
    sessionStorage.removeItem(KEY_STORAGE);
    $("key-error").textContent = err.message;
    $("key-error").hidden = false;
    route();
  }

  $("key-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const key = $("key-input").value.trim();
    sessionStorage.setItem(KEY_STORAGE, key);
    try {
      await api("GET", "/v1/stats/funnel");
      $("key-input").value = "";
      $("key-error").hidden = true;
      route();
    } catch (err) {
      sessionStorage.removeItem(KEY_STORAGE);
      $("key-error").textContent = err.status === 403
        ? "This key is valid but is not an operator key: the console needs an operator key."
        : err.message;
      $("key-error").hidden = false;
    }
  });
  $("forget-key").addEventListener("click", () => {
    sessionStorage.removeItem(KEY_STORAGE);
    route();
  });

  // The operator's tools over many customers, and a customer's explanation.
  const ops = window.onboardOperator({$, h, api, toast, fmtTime, fmtDuration, ageSeconds, stateBadge, customerLink, shortType, randomKey, refresh});

  // ---- views -------------------------------------------------------------

  const views = {};
  let current = null; // {name, refresh}
  // minPosition is the global position of the operator's last command: the
  // next refresh asks the read models to have applied it (min_position), so
  // the operator sees the effect of what they just did.
  let minPosition = 0;
  function withMin(path) {
    if (!minPosition) return path;
    return path + (path.includes("?") ? "&" : "?") + "min_position=" + minPosition;
  }
  let inFlight = false;
  let again = false; // a forced refresh arrived while one was in flight
  let lastOK = 0;

  function show(name) {
    for (const s of document.querySelectorAll("main > .view")) s.hidden = s.id !== "view-" + name;
    for (const a of document.querySelectorAll("[data-nav]")) {
      a.classList.toggle("active", a.dataset.nav === name || (name === "customer" && a.dataset.nav === "customers"));
    }
    $("forget-key").hidden = name === "key";
  }

  function parseHash() {
    const raw = location.hash.replace(/^#/, "") || "/";
    const [path, query] = raw.split("?");
    return {path, params: new URLSearchParams(query || "")};
  }

  function route() {
    if (!apiKey()) {
      current = null;
      show("key");
      setLive("off", "not signed in");
      $("key-input").focus();
      return;
    }
    const {path, params} = parseHash();
    let m;
    if ((m = path.match(/^\/customers\/([^/]+)$/))) {
      current = views.customer(decodeURIComponent(m[1]));
    } else if (path === "/customers") {
      current = views.customers(params);
    } else {
      current = views.overview();
    }
    show(current.name);
    refresh(true);
  }

  async function refresh(force) {
    if (!current) return;
    if (inFlight) {
      again = again || force;
      return;
    }
    if (!force && ($("pause-live").checked || document.hidden || $("action-dialog").open)) {
      if ($("pause-live").checked) setLive("paused", "updates paused");
      return;
    }
    inFlight = true;
    const view = current;
    try {
      // load fetches and returns the drawing; a view left while its data
      // was on the way is not drawn over the new one.
      const waited = minPosition;
      let draw;
      try {
        draw = await view.load();
      } finally {
        // Waited for once, successfully or not (a read model that is
        // behind answers 504): later polls catch up anyway.
        if (minPosition === waited) minPosition = 0;
      }
      if (current === view) draw();
      lastOK = Date.now();
      setLive("ok", "updated " + new Date(lastOK).toLocaleTimeString());
    } catch (err) {
      if (err.status === 401) return;
      setLive("error", (lastOK ? "stale since " + new Date(lastOK).toLocaleTimeString() + " — " : "") + err.message);
    } finally {
      inFlight = false;
      if (current !== view || again) {
        again = false;
        refresh(true);
      }
    }
  }

  // Overview: the funnel and the operator queue.
  views.overview = () => ({
    name: "overview",
    async load() {
      const [funnel, queue, providers, panels, health] = await Promise.all([
        api("GET", withMin("/v1/stats/funnel")),
        api("GET", withMin("/v1/operator/queue")),
        // Provider statistics are a nicety: the overview works without them.
        api("GET", "/v1/stats/providers").catch(() => null),
        ops.loadOverview(),
        api("GET", "/v1/providers").catch(() => null),
      ]);
      return () => {
        renderFunnel(funnel || {});
        renderQueue(listOf(queue));
        renderProviders(providers && Array.isArray(providers.providers) ? providers.providers : null);
        panels();
        renderHealth(health && Array.isArray(health.providers) ? health.providers : []);
      };
    },
  });

  function renderFunnel(f) {
    const states = f.states || {};
    const matrix = Array.isArray(f.by_state_and_step) ? f.by_state_and_step : [];
    $("funnel-states").replaceChildren(...STATES.map((s) =>
      h("a", {class: "card s-" + s, href: "#/customers?state=" + s},
        h("div", {class: "n", text: String(states[s] ?? 0)}), h("div", {class: "label", text: s}))));

    const steps = f.steps || {};
    const pausedAt = {};
    for (const c of matrix) if (c.state === "paused") pausedAt[c.step] = (pausedAt[c.step] || 0) + c.count;
    const maxStep = Math.max(1, ...STEPS.map((s) => steps[s] || 0));
    $("funnel-steps").replaceChildren(...STEPS.map((s) => {
      const bar = h("i");
      bar.style.width = Math.round(100 * (steps[s] || 0) / maxStep) + "%";
      return h("a", {class: "step", href: "#/customers?step=" + s},
        h("div", {class: "label muted", text: s}),
        h("div", {class: "n", text: String(steps[s] ?? 0)}),
        pausedAt[s] ? h("div", {class: "paused", text: pausedAt[s] + " paused"}) : h("div", {class: "paused", text: "\u00a0"}),
        h("div", {class: "bar"}, bar));
    }));

    const cell = {};
    for (const c of matrix) cell[c.state + "/" + c.step] = c.count;
    $("funnel-matrix").replaceChildren(
      h("thead", {}, h("tr", {}, h("th", {text: "state \\ step"}), STEPS.map((s) => h("th", {text: s})))),
      h("tbody", {}, STATES.map((st) => h("tr", {}, h("th", {}, stateBadge(st)), STEPS.map((sp) => {
        const n = cell[st + "/" + sp] || 0;
        return h("td", {class: "num"}, n ? h("a", {href: "#/customers?state=" + st + "&step=" + sp, text: String(n)}) : "·");
      })))));

    const tta = f.time_to_active;
    $("tta").textContent = tta && tta.count
      ? "Time to active (" + tta.count + " since " + fmtTime(tta.since) + "): p50 " + fmtDuration(tta.p50_seconds) + ", p95 " + fmtDuration(tta.p95_seconds)
      : "";
  }

  function renderProviders(rows) {
    $("providers-wrap").hidden = !rows;
    if (!rows) return;
    const cols = ["requested", "succeeded", "failed", "permanent_failures"];
    $("providers").replaceChildren(
      h("thead", {}, h("tr", {}, h("th", {text: "step"}), h("th", {text: "provider"}), cols.map((c) => h("th", {text: c.replace("_", " ")})))),
      h("tbody", {}, rows.map((r) => h("tr", {}, h("td", {text: r.step}), h("td", {text: r.provider}),
        cols.map((c) => h("td", {class: "num", text: String(r[c] ?? 0)}))))));
  }

  // renderHealth shows each provider's breaker, outage, waiting customers
  // and recent calls, with a small chart of its error rate and latency.
  function renderHealth(rows) {
    $("health").tBodies[0].replaceChildren(...rows.map((p) => h("tr", {dataset: {provider: p.provider}},
      h("td", {text: p.provider}),
      h("td", {}, h("span", {class: "pill b-" + p.breaker, text: p.breaker})),
      h("td", {}, h("span", {class: "pill o-" + p.outage, text: p.outage})),
      h("td", {class: "num" + (p.waiting > 0 ? " age-old" : ""), text: String(p.waiting ?? 0)}),
      h("td", {class: "num", text: String(p.attempts ?? 0)}),
      h("td", {class: "num", text: p.attempts ? (100 * p.error_rate).toFixed(1) + "%" : "·"}),
      h("td", {class: "num", text: p.attempts ? Math.round(p.latency_avg_ms) + " ms" : "·"}),
      h("td", {}, sparkline(Array.isArray(p.series) ? p.series : [], p.window_seconds || 300)))));
  }

  // The SVG namespace, as the HTML parser assigns it to an <svg> tag (the
  // console names no URL of another host, not even a namespace's).
  const SVG_NS = new DOMParser().parseFromString("<svg></svg>", "text/html").body.firstChild.namespaceURI;

  // sparkline draws the error rate (0–100 %) and the average latency
  // (scaled to its own maximum) of a provider's points as an inline SVG.
  function sparkline(points, windowSeconds) {
    const W = 160, H = 28, NS = SVG_NS;
    const svg = document.createElementNS(NS, "svg");
    svg.setAttribute("viewBox", "0 0 " + W + " " + H);
    svg.setAttribute("class", "spark");
    svg.setAttribute("role", "img");
    const now = Date.now(), from = now - windowSeconds * 1000;
    const x = (p) => (W * (Date.parse(p.at) - from) / (now - from)).toFixed(1);
    const maxLat = Math.max(1, ...points.map((p) => p.latency_avg_ms || 0));
    const el = (tag, attrs) => {
      const e = document.createElementNS(NS, tag);
      for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
      svg.append(e);
    };
    el("line", {class: "axis", x1: 0, y1: H - 0.5, x2: W, y2: H - 0.5});
    // A line through the points, and a dot on the latest: a single point
    // draws no line.
    const line = (cls, y) => {
      const at = (p) => [x(p), (H - 1 - (H - 2) * y(p)).toFixed(1)];
      el("polyline", {class: cls, points: points.map((p) => at(p).join(",")).join(" ")});
      if (points.length) {
        const [cx, cy] = at(points[points.length - 1]);
        el("circle", {class: cls, cx, cy, r: 2});
      }
    };
    line("lat", (p) => (p.latency_avg_ms || 0) / maxLat);
    line("err", (p) => p.error_rate || 0);
    const last = points[points.length - 1];
    svg.setAttribute("aria-label", last ? "last 10 s: " + Math.round(100 * last.error_rate) + "% errors, " + Math.round(last.latency_avg_ms) + " ms" : "no calls");
    return svg;
  }

  function renderQueue(entries) {
    $("queue-count").textContent = String(entries.length);
    $("queue-count").classList.toggle("hot", entries.length > 0);
    $("queue-empty").hidden = entries.length > 0;
    $("queue").hidden = entries.length === 0;
    $("queue").tBodies[0].replaceChildren(...entries.map((e) => {
      const step = e.step || e.paused_step || "";
      const since = e.since || e.paused_at;
      const age = ageSeconds(since);
      const reason = e.reason || e.pause_reason || "";
      return h("tr", {dataset: {id: e.id}},
        h("td", {}, customerLink(e)),
        h("td", {text: step}),
        h("td", {class: "wrap"}, reason, unlessWithin(e.last_error, reason, (t) => h("div", {class: "muted", text: "last error: " + t}))),
        h("td", {class: "num", text: e.attempts ?? ""}),
        h("td", {class: age > OLD_PAUSE_SECONDS ? "age-old" : "", title: fmtTime(since), text: fmtDuration(age)}),
        h("td", {}, actionButtons(e, step, true)));
    }));
  }

  // unlessWithin returns make(text) unless text is empty or already said
  // within shown (a pause reason quotes the last error): said once is enough.
  function unlessWithin(text, shown, make) {
    return text && !String(shown || "").includes(text) ? make(text) : null;
  }

  function actionButtons(c, step, small) {
    const cls = small ? "small" : "";
    const paused = (c.state || "paused") === "paused";
    const terminal = TERMINAL.has(c.state);
    return h("div", {class: small ? "row-actions" : "actions"},
      h("button", {type: "button", class: cls, disabled: !paused, title: paused ? "Run the " + step + " step again with fresh attempts" : "only a paused customer can be retried",
        onclick: () => openAction("retry", c, step)}, "Retry"),
      h("button", {type: "button", class: "secondary " + cls, disabled: !paused || !SKIPPABLE.has(step),
        title: SKIPPABLE.has(step) ? "Skip the " + step + " step" : "only the crm and welcome steps can be skipped",
        onclick: () => openAction("skip", c, step)}, "Skip"),
      h("button", {type: "button", class: "danger " + cls, disabled: terminal || c.state === "cancelling",
        title: "Cancel the onboarding; billing and tenant are compensated", onclick: () => openAction("cancel", c, step)}, "Cancel"));
  }

  // Customers: search by email or company text, state and step.
  views.customers = (params) => {
    const q = params.get("q") || "", state = params.get("state") || "", step = params.get("step") || "";
    $("search-q").value = q;
    $("search-state").value = state;
    $("search-step").value = step;
    let shown = 0, next = "";
    const query = (limit, cursor) => {
      const p = new URLSearchParams();
      if (q) p.set("q", q);
      if (state) p.set("state", state);
      if (step) p.set("step", step);
      p.set("limit", String(limit));
      if (cursor) p.set("cursor", cursor);
      return "/v1/customers?" + p.toString();
    };
    const view = {
      name: "customers",
      // A refresh reloads what is on screen (at least one page), so that
      // rows change state live without losing the pages loaded so far.
      async load() {
        const body = await api("GET", withMin(query(Math.min(200, Math.max(50, shown)), "")));
        return () => {
          const items = listOf(body);
          next = nextCursorOf(body);
          shown = items.length;
          $("customers").tBodies[0].replaceChildren(...items.map(customerRow));
          $("customers-empty").hidden = items.length > 0;
          $("customers").hidden = items.length === 0;
          $("customers-more").hidden = !next;
        };
      },
      async more() {
        if (!next) return;
        const body = await api("GET", query(50, next));
        const items = listOf(body);
        next = nextCursorOf(body);
        shown += items.length;
        $("customers").tBodies[0].append(...items.map(customerRow));
        $("customers-more").hidden = !next;
      },
    };
    return view;
  };

  function customerRow(c) {
    return h("tr", {},
      h("td", {}, customerLink(c)),
      h("td", {}, stateBadge(c.state)),
      h("td", {text: c.state === "paused" && c.paused_step ? c.paused_step : (TERMINAL.has(c.state) ? "" : c.step || "")}),
      h("td", {title: c.created_at || "", text: fmtTime(c.created_at)}),
      h("td", {title: c.updated_at || "", text: fmtDuration(ageSeconds(c.updated_at)) + " ago"}),
      h("td", {class: "num", text: c.version ?? ""}));
  }

  $("search-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const p = new URLSearchParams();
    for (const [k, id] of [["q", "search-q"], ["state", "search-state"], ["step", "search-step"]]) {
      const v = $(id).value.trim();
      if (v) p.set(k, v);
    }
    const target = "#/customers" + (p.toString() ? "?" + p.toString() : "");
    if (location.hash === target) route(); else location.hash = target;
  });
  $("search-form").addEventListener("reset", () => setTimeout(() => { location.hash = "#/customers"; }, 0));
  $("customers-more").addEventListener("click", async () => {
    if (!current || !current.more) return;
    try { await current.more(); } catch (err) { toast(err.message, true); }
  });

  // Customer: summary, actions and the audit timeline.
  views.customer = (id) => {
    $("state-at").hidden = true;
    $("c-diagnosis").hidden = true;
    $("c-title").textContent = "Customer " + id;
    let drawn = -1;
    return {
      name: "customer",
      async load() {
        const path = "/v1/customers/" + encodeURIComponent(id);
        const [c, events, explained] = await Promise.all([api("GET", withMin(path)), api("GET", path + "/events"),
          api("GET", path + "/explain").catch(() => null)]);
        return () => {
          renderCustomer(c || {});
          if (explained) ops.renderExplain(explained);
          const list = listOf(events);
          // Events are immutable: redraw only when the stream grew, so
          // that an opened detail stays open.
          if (list.length !== drawn) {
            drawn = list.length;
            renderTimeline(id, list);
          }
        };
      },
    };
  };

  function renderCustomer(c) {
    $("c-title").textContent = c.company || c.id;
    $("c-state").replaceChildren(stateBadge(c.state));
    const rows = [
      ["id", h("span", {class: "mono", text: c.id})],
      ["email", c.email], ["contact", c.contact_name], ["country", c.country], ["plan", c.plan],
      ["state", c.state], ["step", TERMINAL.has(c.state) ? "" : c.step],
      ["attempts", c.attempts], ["last error", unlessWithin(c.last_error, c.pause_reason, (t) => t)],
      ["paused at step", c.paused_step], ["pause reason", c.pause_reason],
      ["paused", c.paused_at ? fmtTime(c.paused_at) + " (" + fmtDuration(ageSeconds(c.paused_at)) + " ago)" : ""],
      ["signed up", fmtTime(c.created_at)], ["signed up by", c.created_by],
      ["activated", fmtTime(c.activated_at)], ["updated", fmtTime(c.updated_at)],
      ["version", c.version], ["position", c.position],
    ];
    $("c-summary").replaceChildren(...rows.filter(([, v]) => v !== undefined && v !== null && v !== "")
      .flatMap(([k, v]) => [h("dt", {text: k}), h("dd", {}, v instanceof Node ? v : String(v))]));
    $("c-actions").replaceChildren(actionButtons(c, c.paused_step || c.step, false));
  }

  function eventKind(type, data) {
    const t = String(type || "");
    if (data && data.operator) return "operator";
    for (const k of ["failed", "paused", "rejected", "succeeded", "completed"]) if (t.includes(k)) return k;
    return "other";
  }

  function renderTimeline(id, events) {
    $("timeline").replaceChildren(...events.map((e) => {
      const data = (e.data && typeof e.data === "object") ? e.data : {};
      const meta = (e.metadata && typeof e.metadata === "object") ? e.metadata : {};
      const actor = e.actor || meta.actor || data.operator || "";
      const reason = e.reason || data.reason || data.message || "";
      const time = e.recorded_at || e.time || e.at || "";
      const details = [];
      if (data.step) details.push("step " + data.step);
      if (data.attempt) details.push("attempt " + data.attempt);
      if (data.error_class) details.push(data.error_class);
      if (data.check_id) details.push("check " + data.check_id);
      const corr = e.correlation_id || meta.correlation_id;
      const version = e.version ?? e.stream_version;
      return h("li", {class: "k-" + eventKind(e.type, data)},
        h("div", {class: "ev-head"},
          h("span", {class: "ev-time", title: time, text: fmtTime(time)}),
          h("span", {class: "ev-type", title: e.type || "", text: shortType(e.type)}),
          actor ? h("span", {class: "ev-actor", title: "actor", text: actor}) : null,
          details.length ? h("span", {class: "ev-meta", text: details.join(" · ")}) : null,
          version != null ? h("button", {type: "button", class: "link small", onclick: () => showStateAt(id, version)}, "state here (v" + version + ")") : null),
        reason ? h("div", {class: "ev-reason", text: reason}) : null,
        h("details", {},
          h("summary", {text: "details" + (corr ? " · correlation " + corr : "")}),
          h("pre", {text: JSON.stringify(e, null, 2)})));
    }));
    if (events.length === 0) $("timeline").append(h("li", {class: "muted", text: "No events (yet)."}));
  }

  async function showStateAt(id, version) {
    try {
      const s = await api("GET", "/v1/customers/" + encodeURIComponent(id) + "/state?version=" + encodeURIComponent(version));
      $("state-at-title").textContent = "State after version " + version;
      $("state-at-body").replaceChildren(ops.stateTable(s));
      $("state-at").hidden = false;
      $("state-at").scrollIntoView({behavior: "smooth", block: "nearest"});
    } catch (err) {
      toast(err.message, true);
    }
  }

  // ---- operator actions -----------------------------------------------------

  const ACTIONS = {
    retry: {title: "Retry", verb: "Retry the %s step of", needsReason: false, danger: false},
    skip: {title: "Skip step", verb: "Skip the %s step of", needsReason: true, danger: false},
    cancel: {title: "Cancel onboarding", verb: "Cancel the onboarding of", needsReason: true, danger: true},
  };
  let pending = null; // {action, id, version, key}

  function openAction(action, c, step) {
    const a = ACTIONS[action];
    // One key per opened dialog: a double submit or a retried request
    // replays the first answer instead of running the command twice.
    pending = {action, id: c.id, version: c.version, key: randomKey()};
    $("action-title").textContent = a.title;
    $("action-target").textContent = a.verb.replace("%s", step || "current") + " " + (c.company || "") + " <" + (c.email || c.id) + ">.";
    $("action-reason").value = "";
    $("action-reason").required = a.needsReason;
    $("action-reason").placeholder = a.needsReason ? "required" : "optional, e.g. provider outage is over";
    $("action-error").hidden = true;
    $("action-confirm").className = a.danger ? "danger" : "";
    $("action-confirm").textContent = a.title;
    $("action-confirm").disabled = false;
    $("action-dialog").showModal();
    $("action-reason").focus();
  }

  $("action-cancel").addEventListener("click", () => $("action-dialog").close());
  $("action-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    if (!pending) return;
    const reason = $("action-reason").value.trim();
    if (ACTIONS[pending.action].needsReason && !reason) {
      $("action-error").textContent = "A reason is required: it is recorded in the audit trail.";
      $("action-error").hidden = false;
      return;
    }
    const p = pending;
    const headers = {"Idempotency-Key": p.key};
    // If-Match: act only on the customer as the operator saw it.
    if (p.version) headers["If-Match"] = '"' + p.version + '"';
    $("action-confirm").disabled = true;
    try {
      const res = await api("POST", "/v1/customers/" + encodeURIComponent(p.id) + "/" + p.action, {body: {reason}, headers});
      $("action-dialog").close();
      pending = null;
      toast(ACTIONS[p.action].title + " accepted: now " + (res && res.state ? res.state : "updated") + ".");
      if (res && res.position > minPosition) minPosition = res.position;
      refresh(true);
    } catch (err) {
      $("action-confirm").disabled = false;
      let msg = err.message;
      if (err.status === 412) msg = "The customer changed since this page showed it; close, check the refreshed view and try again.";
      else if (err.status === 403) msg = "This key may not run operator commands.";
      $("action-error").textContent = msg;
      $("action-error").hidden = false;
      if (err.status === 412 || err.status === 409) refresh(true);
    }
  });
  $("action-dialog").addEventListener("close", () => { pending = null; });

  // ---- start -------------------------------------------------------------

  for (const s of STATES) $("search-state").append(h("option", {value: s, text: s}));
  for (const s of STEPS) $("search-step").append(h("option", {value: s, text: s}));
  $("pause-live").addEventListener("change", () => refresh(true));
  window.addEventListener("hashchange", route);
  document.addEventListener("visibilitychange", () => { if (!document.hidden) refresh(false); });
  setInterval(() => refresh(false), POLL_MS);
  route();
})();
