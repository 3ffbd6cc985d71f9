// The chat page: one WebSocket to the room, the same lines and commands as a terminal.
//
// The server sends records (chatroom/web/rendering.py): each line of the room
// with what it is ("Message", "Joined", "Refused", ...), its time, its sender
// and its text as styled runs [text, flags, colour]. Rules kept here:
//
// * Text from others is only ever put in the page with textContent and
//   createElement: never innerHTML. (The Content-Security-Policy forbids inline
//   script anyway.)
// * What the user types goes to the server as it is, one message per Enter:
//   commands, markup and all. The server's echo is the record of it.
// * Tab completes from the command table the server sends first, so it offers
//   what the server understands.
"use strict";

const FLAG_CLASSES = { b: "b", i: "i", s: "s", d: "d", u: "u", r: "r" };
const SPOKEN = new Set(["Message", "Action", "PrivateFrom", "PrivateTo"]);
// Lines after which the server closes the connection, and what the page says then.
const FAREWELLS = {
  Goodbye: () => "You left the room.",
  Kicked: (r) => `You were removed by the operator${r.reason}.`,
  ShuttingDown: () => "The server is shutting down.",
};

const $ = (id) => document.getElementById(id);

const state = {
  ws: null,
  phase: "idle", // idle, connecting, naming, password, waiting, room, ended
  hello: null, // the server's command table, colours and limits
  name: "", // the name asked for
  nameSent: false,
  me: null, // the name the room knows us by
  people: new Map(), // name -> colour
  spoke: [], // names, the latest speaker first (completion offers them first)
  inHistory: false,
  hideWho: 0, // /who replies the page asked for itself, not shown
  endedWith: null,
  unread: 0,
  sent: [], // what was typed, for the arrow keys
  sentAt: 0,
  completion: null,
};

// --- views -----------------------------------------------------------------------

function show(view) {
  for (const id of ["join", "password-card", "waiting", "ended", "room"]) $(id).hidden = id !== view;
}

function setStatus(text, live = false) {
  const status = $("status");
  status.textContent = text;
  status.classList.toggle("live", live);
}

// --- connecting --------------------------------------------------------------------

function connect(name) {
  state.name = name;
  state.nameSent = false;
  state.endedWith = null;
  state.phase = "connecting";
  setStatus("connecting…");
  $("join-button").disabled = true;
  const scheme = location.protocol === "https:" ? "wss://" : "ws://";
  const ws = new WebSocket(`${scheme}${location.host}/chat`);
  state.ws = ws;
  ws.onmessage = (event) => {
    if (ws === state.ws) receive(JSON.parse(event.data));
  };
  ws.onclose = () => {
    if (ws === state.ws) closed();
  };
}

function sendName() {
  if (!state.nameSent && state.ws && state.ws.readyState === WebSocket.OPEN) {
    state.ws.send(state.name);
    state.nameSent = true;
  }
}

function receive(record) {
  if (record.hello) state.hello = record.hello;
  if (record.prompt) {
    if (state.phase === "connecting") state.phase = "naming";
    sendName();
  }
  if (record.password) askPassword();
  for (const line of record.lines || []) take(line);
}

function askPassword() {
  // A registered name: the server asks for its password (again, after a wrong one).
  if (state.phase !== "password") $("password-error").hidden = true;
  state.phase = "password";
  $("password-title").textContent = `${state.name} is a registered name`;
  $("password").value = "";
  $("password-button").disabled = false;
  setStatus("the password, please");
  show("password-card");
  $("password").focus();
}

function closed() {
  const why = state.endedWith || (state.phase === "connecting"
    ? "Could not reach the chat server."
    : "The connection to the chat server was lost.");
  end(why);
}

function end(why) {
  if (state.phase === "ended") return;
  const wasIn = state.phase === "room";
  state.phase = "ended";
  state.endedWith = why;
  state.ws = null;
  setStatus("not connected");
  $("join-button").disabled = false;
  if (wasIn) {
    $("composer").hidden = true;
    $("over-text").textContent = why;
    $("over").hidden = false;
    $("rejoin").focus();
  } else {
    $("ended-text").textContent = why;
    show("ended");
    $("again").focus();
  }
  notify("chatroom", why);
}

// --- what the server says ------------------------------------------------------------

function take(line) {
  switch (line.kind) {
    case "Greeting":
      return;
    case "Notice":
      if (state.phase !== "password") break;
      $("password-error").textContent = plain(line); // a wrong password
      $("password-error").hidden = false;
      return;
    case "NameRejected":
      state.phase = "naming";
      $("join-error").textContent = plain(line);
      $("join-error").hidden = false;
      $("join-button").disabled = false;
      show("join");
      $("name").focus();
      return;
    case "Waiting":
      state.phase = "waiting";
      $("waiting-text").textContent = `Hello ${line.name}. Waiting for the operator to let you in…`;
      setStatus("waiting for the operator");
      show("waiting");
      return;
    case "Refused":
      state.endedWith = plain(line);
      if (state.phase !== "room") return end(state.endedWith);
      break;
    case "Welcome":
      enterRoom(line);
      break;
    case "HistoryStart":
      state.inHistory = true;
      return divider(plain(line));
    case "HistoryEnd":
      state.inHistory = false;
      return divider(plain(line));
    case "Joined":
      if (!state.inHistory) addPerson(line.name, line.hues[line.name]);
      break;
    case "Left":
      if (!state.inHistory) removePerson(line.name);
      break;
    case "Renamed":
      if (!state.inHistory) renamePerson(line.old, line.new, line.hues[line.new]);
      break;
    case "WhoList":
    case "WhoMore":
      if (line.kind === "WhoList") state.people.clear();
      for (const name of line.names) state.people.set(name, line.hues[name]);
      drawPeople();
      if (state.hideWho) {
        if (line.kind === "WhoList") state.hideWho -= 1;
        return;
      }
      break;
    default:
      if (FAREWELLS[line.kind]) state.endedWith = FAREWELLS[line.kind](line);
  }
  if (state.phase === "room" || SPOKEN.has(line.kind)) append(line);
}

function enterRoom(welcome) {
  state.phase = "room";
  state.me = welcome.name;
  state.people = new Map(welcome.names.map((n) => [n, welcome.hues[n]]));
  if (welcome.count > welcome.names.length) {
    state.hideWho += 1; // a big room: the welcome names the first few only
    state.ws.send("/who");
  }
  $("log").replaceChildren();
  $("composer").hidden = false;
  $("over").hidden = true;
  show("room");
  drawPeople();
  $("input").focus();
}

// --- the name list ---------------------------------------------------------------------

function addPerson(name, hue) {
  state.people.set(name, hue);
  drawPeople();
}

function removePerson(name) {
  state.people.delete(name);
  state.spoke = state.spoke.filter((n) => n !== name);
  drawPeople();
}

function renamePerson(old, name, hue) {
  state.people.delete(old);
  state.people.set(name, hue);
  state.spoke = state.spoke.map((n) => (n === old ? name : n));
  if (state.me === old) state.me = name;
  drawPeople();
}

function drawPeople() {
  const list = $("names");
  const items = [...state.people].map(([name, hue]) => {
    const item = document.createElement("li");
    item.textContent = name;
    item.title = `/private ${name}`;
    if (hue) item.classList.add(`fg-${hue}`);
    if (name === state.me) item.classList.add("me");
    item.addEventListener("click", () => insert(`/private ${name} `));
    return item;
  });
  list.replaceChildren(...items);
  $("count").textContent = `(${state.people.size})`;
  if (state.phase === "room") setStatus(`in the room as ${state.me}`, true);
}

// --- drawing lines -----------------------------------------------------------------------

function plain(line) {
  return line.body.map((run) => run[0]).join("");
}

function runsInto(parent, runs, colours, mention) {
  for (const [text, flags, colour] of runs) {
    const span = document.createElement("span");
    for (const flag of flags) if (FLAG_CLASSES[flag]) span.classList.add(FLAG_CLASSES[flag]);
    if (colours && colour && state.hello && state.hello.colors.includes(colour)) {
      span.classList.add(`fg-${colour}`);
    }
    marked(span, text, mention);
    parent.append(span);
  }
}

// Text with each mention of the reader's name in a <mark>, built from text nodes.
function marked(parent, text, pattern) {
  if (!pattern) {
    parent.append(text);
    return;
  }
  let last = 0;
  for (const found of text.matchAll(pattern)) {
    parent.append(text.slice(last, found.index));
    const mark = document.createElement("mark");
    mark.textContent = found[0];
    parent.append(mark);
    last = found.index + found[0].length;
  }
  parent.append(text.slice(last));
}

function escapeRegExp(text) {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

// The reader's name as a word of its own, in any case (formatting/layout.py's rule).
function mentionPattern() {
  if (!state.me) return null;
  const word = "[\\p{L}\\p{N}_]";
  return new RegExp(`(?<!${word}|[.-])${escapeRegExp(state.me)}(?!${word}|-|\\.${word}|\\.-)`, "giu");
}

function append(line) {
  const log = $("log");
  const stick = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
  const item = document.createElement("li");
  item.classList.add("line");
  item.dataset.kind = line.kind;
  const spoken = SPOKEN.has(line.kind);
  item.classList.add(spoken ? line.kind.toLowerCase() : "system");
  if (line.kind.startsWith("Private")) item.classList.add("private");
  if (line.tone === "error") item.classList.add("error");
  if (state.inHistory) item.classList.add("history");

  const head = document.createElement("span");
  head.classList.add("head");
  if (line.at) {
    const time = document.createElement("time");
    time.textContent = line.at.slice(0, 5);
    time.title = line.at;
    head.append(time, " ");
  }
  const mine = spoken && line.name === state.me && line.kind !== "PrivateFrom";
  if (spoken) {
    if (line.kind.startsWith("Private")) {
      const tag = document.createElement("span");
      tag.classList.add("tag");
      tag.textContent = line.kind === "PrivateFrom" ? "PM from" : "PM to";
      head.append(tag, " ");
    }
    const who = document.createElement("span");
    who.classList.add("who");
    if (line.hues && line.hues[line.name]) who.classList.add(`fg-${line.hues[line.name]}`);
    who.textContent = line.name;
    head.append(who);
    if (line.kind === "Message" || line.kind === "Action") noteSpeaker(line.name);
  }
  const pattern = spoken && !mine ? mentionPattern() : null;
  const mentioned = pattern !== null && pattern.test(plain(line));
  if (mentioned) item.classList.add("mention");

  const text = document.createElement("span");
  text.classList.add("text");
  runsInto(text, line.body, spoken, mentioned ? mentionPattern() : null);
  item.append(head, text);
  log.append(item);
  if (stick) log.scrollTop = log.scrollHeight;

  if (!state.inHistory && !mine && (mentioned || line.kind === "PrivateFrom")) {
    const title = line.kind === "PrivateFrom" ? `Private message from ${line.name}` : `${line.name} mentioned you`;
    notify(title, plain(line));
  }
}

function divider(text) {
  const item = document.createElement("li");
  item.classList.add("divider");
  item.textContent = text;
  $("log").append(item);
}

function noteSpeaker(name) {
  if (name === state.me) return;
  state.spoke = [name, ...state.spoke.filter((n) => n !== name)];
}

// --- notifications ------------------------------------------------------------------------

function askToNotify() {
  if ("Notification" in window && Notification.permission === "default") {
    Notification.requestPermission();
  }
}

function notify(title, body) {
  if (!document.hidden) return;
  state.unread += 1;
  document.title = `(${state.unread}) chatroom`;
  if ("Notification" in window && Notification.permission === "granted") {
    new Notification(title, { body, tag: "chatroom" });
  }
}

document.addEventListener("visibilitychange", () => {
  if (!document.hidden) {
    state.unread = 0;
    document.title = "chatroom";
  }
});

// --- Tab: names and commands, from the server's table (protocol/commands.py) -----------------

function spelled(spec, word, followed) {
  const spellings = [spec.name, ...spec.aliases];
  if (spec.word) return followed && spellings.includes(word);
  return spellings.includes(word.toLowerCase());
}

// What the word after `words` is: NAME, NEW_NAME, COLOR, TEXT, PRIVATE_TEXT, or null.
function nextArgument(words) {
  if (!words.length) return "TEXT";
  const table = state.hello.commands;
  const spec = table.find((s) => spelled(s, words[0], true));
  if (!spec) return "TEXT";
  const color = table.find((s) => s.name === state.hello.color_command);
  let expected = [...spec.args];
  for (const word of words.slice(1)) {
    if (!expected.length) return null;
    const arg = expected.shift();
    if (arg === "PRIVATE_TEXT") expected = spelled(color, word, true) ? ["COLOR", "TEXT"] : ["TEXT"];
    else if (arg === "TEXT") expected = ["TEXT"];
  }
  return expected.length ? expected[0] : null;
}

function startingWith(word, candidates, suffix) {
  const key = word.toLowerCase();
  return candidates.filter((c) => c.toLowerCase().startsWith(key)).map((c) => c + suffix);
}

// Each command's canonical name if it fits, else those of its aliases that do.
function commandsFor(word, specs) {
  const key = word.toLowerCase();
  const out = [];
  for (const spec of specs) {
    let fitting = [spec.name, ...spec.aliases].filter((s) => s.toLowerCase().startsWith(key));
    if (fitting.includes(spec.name)) fitting = [spec.name];
    out.push(...fitting.map((s) => `${s} `));
  }
  return out;
}

function others() {
  const rest = [...state.people.keys()].filter((n) => n !== state.me && !state.spoke.includes(n));
  return [...state.spoke.filter((n) => state.people.has(n)), ...rest];
}

function candidates(before) {
  const words = before.split(/\s+/).filter(Boolean);
  const word = !before || /\s$/.test(before) ? "" : words.pop();
  if (!words.length) {
    if (!word) return [];
    const names = word.startsWith("/") ? [] : startingWith(word, others(), ": ");
    return [...names, ...commandsFor(word, state.hello.commands)];
  }
  const expected = nextArgument(words);
  if (expected === "NAME") return startingWith(word, others(), " ");
  if (expected === "COLOR") return startingWith(word, state.hello.colors, " ");
  if (expected === "PRIVATE_TEXT" && word.startsWith("/")) {
    return commandsFor(word, state.hello.commands.filter((s) => s.name === state.hello.color_command));
  }
  if ((expected === "TEXT" || expected === "PRIVATE_TEXT") && word) return startingWith(word, others(), " ");
  return [];
}

function complete() {
  const input = $("input");
  const c = state.completion;
  if (c && input.value === c.value && input.selectionStart === c.cursor) {
    c.index = (c.index + 1) % c.options.length; // Tab again: the next candidate
  } else {
    const before = input.value.slice(0, input.selectionStart);
    const word = /\s$/.test(before) ? "" : before.split(/\s+/).pop();
    const options = state.hello ? candidates(before) : [];
    if (!options.length) return;
    state.completion = { start: before.length - word.length, end: input.selectionStart, options, index: 0 };
  }
  const done = state.completion;
  const choice = done.options[done.index];
  const after = input.value.slice(done.end);
  input.value = input.value.slice(0, done.start) + choice + after;
  done.end = done.start + choice.length;
  input.selectionStart = input.selectionEnd = done.end;
  done.value = input.value;
  done.cursor = done.end;
  showCompletions(done);
}

function showCompletions(c) {
  const hint = $("completions");
  if (!c || c.options.length < 2) {
    hint.hidden = true;
    return;
  }
  hint.replaceChildren();
  c.options.forEach((option, i) => {
    const span = document.createElement("span");
    span.textContent = option.trim();
    if (i === c.index) span.classList.add("current");
    hint.append(span, " ");
  });
  hint.hidden = false;
}

// --- writing ------------------------------------------------------------------------------------

function insert(text) {
  const input = $("input");
  input.value = text + input.value.replace(/^\/private \S+ /, "");
  input.focus();
  input.selectionStart = input.selectionEnd = text.length;
}

function say() {
  const input = $("input");
  const text = input.value;
  if (!text.trim() || !state.ws || state.phase !== "room") return;
  state.ws.send(text);
  state.sent.push(text);
  state.sentAt = state.sent.length;
  input.value = "";
  fit();
  state.completion = null;
  showCompletions(null);
}

function fit() {
  const input = $("input");
  input.style.height = "auto";
  input.style.height = `${input.scrollHeight + 2}px`;
}

function recall(step) {
  const input = $("input");
  const at = Math.min(state.sent.length, Math.max(0, state.sentAt + step));
  if (at === state.sentAt) return;
  state.sentAt = at;
  input.value = state.sent[at] || "";
  fit();
}

function keys(event) {
  const input = $("input");
  if (event.key === "Tab") {
    event.preventDefault();
    complete();
    return;
  }
  state.completion = null;
  showCompletions(null);
  if (event.key === "Enter" && !event.shiftKey) {
    event.preventDefault();
    say();
  } else if (event.key === "ArrowUp" && !input.value.slice(0, input.selectionStart).includes("\n")) {
    event.preventDefault();
    recall(-1);
  } else if (event.key === "ArrowDown" && !input.value.slice(input.selectionEnd).includes("\n")) {
    event.preventDefault();
    recall(1);
  }
}

// --- wiring ---------------------------------------------------------------------------------------

function start() {
  $("join-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const name = $("name").value.trim();
    if (!name) return;
    askToNotify();
    $("join-error").hidden = true;
    if (state.phase === "naming" && state.ws) {
      state.name = name; // asked again after a refusal: same connection
      state.nameSent = false;
      $("join-button").disabled = true;
      sendName();
    } else {
      connect(name);
    }
  });
  $("password-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const password = $("password").value;
    if (!password || !state.ws || state.phase !== "password") return;
    state.ws.send(password);
    $("password").value = "";
    $("password-button").disabled = true; // until the server answers: let in, or asked again
    setStatus("checking the password…");
  });
  $("cancel").addEventListener("click", () => {
    const ws = state.ws;
    state.ws = null;
    state.phase = "idle";
    if (ws) ws.close();
    $("join-button").disabled = false;
    setStatus("not connected");
    show("join");
  });
  $("again").addEventListener("click", () => {
    state.phase = "idle";
    show("join");
    $("name").focus();
  });
  $("rejoin").addEventListener("click", () => connect(state.me || state.name));
  $("say-form").addEventListener("submit", (event) => {
    event.preventDefault();
    say();
  });
  $("input").addEventListener("keydown", keys);
  $("input").addEventListener("input", fit);
  show("join");
}

start();
