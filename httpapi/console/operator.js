// onboard operator console: the operator's tools over many customers (paused
// groups with bulk retry, bulk progress, stuck customers, dead letters) and a
// customer's explanation and past state.
//
// app.js calls window.onboardOperator with its helpers and uses what it
// returns; this file only defines that function. As in app.js, data from the
// API is only ever put into the page as text.
"use strict";

window.onboardOperator = (ui) => {
  const {$, h, api, toast, fmtTime, fmtDuration, ageSeconds, stateBadge, customerLink, shortType, randomKey, refresh} = ui;

  // ---- overview panels ------------------------------------------------------

  // loadOverview fetches the panels' data; each is optional, so that the
  // overview still shows the funnel when one fails.
  async function loadOverview() {
    const [groups, bulks, stuck, dead] = await Promise.all([
      api("GET", "/v1/operator/queue/groups").catch(() => null),
      api("GET", "/v1/operator/bulk?limit=5").catch(() => null),
      api("GET", "/v1/operator/stuck").catch(() => null),
      api("GET", "/v1/operator/dead-letters?status=dead").catch(() => null),
    ]);
    return () => {
      renderGroups(groups && Array.isArray(groups.groups) ? groups.groups : []);
      renderBulks(bulks && Array.isArray(bulks.items) ? bulks.items : []);
      renderStuck(stuck && Array.isArray(stuck.items) ? stuck.items : []);
      renderDeadLetters(dead && Array.isArray(dead.items) ? dead.items : []);
    };
  }

  function renderGroups(groups) {
    $("groups-wrap").hidden = groups.length === 0;
    $("groups").replaceChildren(...groups.map((g) => h("div", {class: "group", dataset: {step: g.step, cause: g.cause}},
      h("div", {class: "group-head"},
        h("strong", {text: g.step}), h("span", {class: "cause", text: g.cause || "no reason"}),
        h("span", {class: "muted", text: g.count + " paused, the oldest " + fmtDuration(ageSeconds(g.oldest)) + " ago"}),
        h("button", {type: "button", class: "small", onclick: () => openBulk(g)}, "Retry all " + g.count)),
      h("div", {class: "muted group-example", text: g.example || ""}))));
  }

  function renderBulks(ops) {
    $("bulks-wrap").hidden = ops.length === 0;
    $("bulks").replaceChildren(...ops.map((op) => {
      const finished = (op.done || 0) + (op.failed || 0);
      const bar = h("progress", {max: String(op.total || 1), value: String(finished)});
      const f = op.filter || {};
      const what = [f.step, f.error_code].filter(Boolean).join(" · ");
      return h("li", {dataset: {id: op.id, status: op.status}},
        h("div", {class: "bulk-head"},
          h("strong", {text: op.action}), what ? h("span", {class: "cause", text: what}) : null,
          h("span", {class: "muted", text: "by " + op.operator + ", " + fmtTime(op.created_at)})),
        bar,
        h("div", {class: "bulk-progress", text: finished + " of " + op.total + " done" + (op.failed ? ", " + op.failed + " failed" : "") +
          (op.status === "done" ? "" : " · running at up to " + op.rate + "/s")}),
        op.reason ? h("div", {class: "muted", text: op.reason}) : null,
        (op.failures || []).length ? h("details", {}, h("summary", {text: "failures"}),
          h("ul", {}, op.failures.map((x) => h("li", {}, h("a", {href: "#/customers/" + encodeURIComponent(x.customer_id), class: "mono", text: x.customer_id}), " ", x.error)))) : null);
    }));
  }

  function renderStuck(items) {
    $("stuck-count").textContent = String(items.length);
    $("stuck-count").classList.toggle("hot", items.length > 0);
    $("stuck-empty").hidden = items.length > 0;
    $("stuck").hidden = items.length === 0;
    $("stuck").tBodies[0].replaceChildren(...items.map((s) => h("tr", {dataset: {id: s.id}},
      h("td", {}, customerLink(s)),
      h("td", {}, stateBadge(s.state)),
      h("td", {text: s.step}),
      h("td", {dataset: {label: "waits for"}, text: s.waits_for}),
      h("td", {class: "age-old", dataset: {label: "overdue"}, title: "due " + fmtTime(s.deadline), text: fmtDuration(ageSeconds(s.deadline))}))));
  }

  function renderDeadLetters(items) {
    $("dl-count").textContent = String(items.length);
    $("dl-count").classList.toggle("hot", items.length > 0);
    $("dl-empty").hidden = items.length > 0;
    $("deadletters").hidden = items.length === 0;
    $("deadletters").tBodies[0].replaceChildren(...items.map((d) => h("tr", {dataset: {id: String(d.id)}},
      h("td", {class: "mono", text: String(d.id)}),
      h("td", {text: d.handler}),
      h("td", {title: d.event_id, text: shortType(d.event_type)}),
      h("td", {class: "wrap", text: d.error}),
      h("td", {class: "num", text: String(d.deliveries)}),
      h("td", {title: fmtTime(d.updated_at), text: fmtDuration(ageSeconds(d.updated_at))}),
      h("td", {}, h("button", {type: "button", class: "small", onclick: (e) => redrive(d, e.currentTarget)}, "Redrive")))));
  }

  async function redrive(d, button) {
    button.disabled = true;
    try {
      await api("POST", "/v1/operator/dead-letters/" + encodeURIComponent(d.id) + "/redrive", {headers: {"Idempotency-Key": randomKey()}});
      toast("Dead letter " + d.id + " sent to " + d.handler + " again.");
      refresh(true);
    } catch (err) {
      button.disabled = false;
      toast(err.message, true);
    }
  }

  // ---- bulk retry of a group ----------------------------------------------

  let bulk = null; // {group, count, key}

  // openBulk counts the group's customers now (a dry run), and asks the
  // operator to confirm that count with a reason.
  async function openBulk(group) {
    let dry;
    try {
      dry = await api("POST", "/v1/operator/bulk", {body: {action: "retry", filter: group.filter, dry_run: true}});
    } catch (err) {
      toast(err.message, true);
      return;
    }
    bulk = {group, count: dry.count, key: randomKey()};
    const seconds = dry.rate ? Math.ceil(dry.count / dry.rate) : 0;
    $("bulk-title").textContent = "Retry " + dry.count + " customers";
    $("bulk-target").textContent = "Retry the " + group.step + " step of " + dry.count + " paused customers (cause: " +
      (group.cause || "none") + "), at most " + dry.rate + " a second" + (seconds > 1 ? ": about " + fmtDuration(seconds) + "." : ".");
    $("bulk-reason").value = "";
    $("bulk-error").hidden = true;
    $("bulk-confirm").textContent = "Retry " + dry.count + " customers";
    $("bulk-confirm").disabled = dry.count === 0;
    $("bulk-dialog").showModal();
    $("bulk-reason").focus();
  }

  $("bulk-cancel").addEventListener("click", () => $("bulk-dialog").close());
  $("bulk-dialog").addEventListener("close", () => { bulk = null; });
  $("bulk-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    if (!bulk) return;
    const reason = $("bulk-reason").value.trim();
    if (!reason) {
      $("bulk-error").textContent = "A reason is required: it is recorded on every customer's event.";
      $("bulk-error").hidden = false;
      return;
    }
    const b = bulk;
    $("bulk-confirm").disabled = true;
    try {
      const op = await api("POST", "/v1/operator/bulk", {body: {action: "retry", filter: b.group.filter, reason},
        headers: {"Idempotency-Key": b.key}});
      $("bulk-dialog").close();
      toast("Bulk retry started: " + op.total + " customers.");
      refresh(true);
    } catch (err) {
      $("bulk-confirm").disabled = false;
      $("bulk-error").textContent = err.message;
      $("bulk-error").hidden = false;
    }
  });

  // ---- a customer's explanation -------------------------------------------

  function renderExplain(x) {
    $("c-diagnosis").textContent = x.diagnosis || "";
    $("c-diagnosis").hidden = !x.diagnosis;
    const calls = x.calls || [];
    $("calls-empty").hidden = calls.length > 0;
    $("calls").hidden = calls.length === 0;
    $("calls").tBodies[0].replaceChildren(...calls.map((c) => h("tr", {class: "o-" + c.outcome},
      h("td", {dataset: {label: "step"}, text: c.step + " (" + c.provider + ")"}),
      h("td", {dataset: {label: "attempt (group.attempt)"}, text: c.attempt ? c.attempt_group + "." + c.attempt : ""}),
      h("td", {class: "mono wrap", dataset: {label: "key"}, text: c.idempotency_key}),
      h("td", {dataset: {label: "requested"}, title: c.requested_at, text: fmtTime(c.requested_at)}),
      h("td", {class: "wrap", dataset: {label: "outcome"}, text: c.outcome.replace("_", " ") + (c.error_class ? " (" + c.error_class + ")" : "") + (c.message ? ": " + c.message : "")}),
      h("td", {class: "num", dataset: {label: "latency"}, text: c.latency_ms != null ? c.latency_ms + " ms" : ""}))));
    const timers = x.timers || [], inbox = x.inbox || [], dead = x.dead_letters || [], traces = x.trace_ids || [];
    $("c-more-summary").textContent = timers.length + " pending timers, " + inbox.length + " inbox rows, " + dead.length +
      " dead letters, " + traces.length + " traces";
    const list = (title, items, line) => [h("h3", {text: title}), items.length
      ? h("ul", {class: "plain"}, items.map((i) => h("li", {}, line(i))))
      : h("p", {class: "muted", text: "none"})];
    $("c-more-body").replaceChildren(
      ...list("Pending timers", timers, (t) => t.kind + " of " + t.step + " (attempt " + t.attempt + ") due " + fmtTime(t.due_at) + (t.ref ? " · " + t.ref : "")),
      ...list("Inbox", inbox, (i) => i.handler + " handled " + shortType(i.event_type) + " at " + fmtTime(i.processed_at)),
      ...list("Dead letters", dead, (d) => "#" + d.id + " " + d.handler + " " + shortType(d.event_type) + " (" + d.status + "): " + d.error),
      ...list("Trace ids", traces, (t) => h("span", {class: "mono", text: t})));
  }

  // ---- a past state, as a table ---------------------------------------------

  const STEP_COLUMNS = [["step", "step"], ["attempt_group", "group"], ["attempt", "attempt"], ["in_flight", "in flight"],
    ["failures", "failures"], ["requested", "requested"], ["succeeded", "succeeded"], ["skipped", "skipped"], ["compensated", "compensated"]];

  function cellText(v) {
    if (v === true) return "yes";
    if (v === false || v === undefined || v === null || v === 0 || v === "") return "";
    if (typeof v === "object") return Object.entries(v).map(([k, x]) => k + ": " + x).join(", ");
    return String(v);
  }

  // stateTable shows a customer snapshot: its fields, then one row per step.
  function stateTable(s) {
    const fields = Object.entries(s).filter(([k, v]) => k !== "steps" && cellText(v) !== "");
    const steps = Array.isArray(s.steps) ? s.steps : [];
    return h("div", {},
      h("dl", {class: "summary"}, fields.flatMap(([k, v]) => [h("dt", {text: k.replace(/_/g, " ")}),
        h("dd", {class: k === "id" || k.endsWith("_id") ? "mono" : "", text: k.endsWith("_at") ? fmtTime(v) : cellText(v)})])),
      h("table", {class: "grid stack steps-table"},
        h("thead", {}, h("tr", {}, STEP_COLUMNS.map(([, label]) => h("th", {text: label})), h("th", {text: "result"}))),
        h("tbody", {}, steps.map((st) => h("tr", {},
          STEP_COLUMNS.map(([k, label]) => h("td", {dataset: {label}, text: cellText(st[k])})),
          h("td", {class: "wrap", dataset: {label: "result"}, text: cellText(st.result)}))))));
  }

  return {loadOverview, renderExplain, stateTable};
};
