// The model server's page: pick a model, draw / upload / type an input, see the answer.
// Talks only to this server's own API (/models, /predict, /generate); no outside resources.
// What it shows comes from the model's metadata: the form of its input (image, text, array,
// fields) picks the input panel, the form of its answers (ranking, values, text) how they show.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  // A tokened server lets the browser open /?token=...; every API call then sends the header.
  const token = new URLSearchParams(location.search).get("token");
  const TOP_K = 5;
  const state = {
    models: [], meta: null, parse: null, drawn: false, file: null, bitmap: null, busy: false,
    asked: 0,
    history: [], titles: new Map(), ids: new Map(),
  };
  window.lastInput = null; // what the last request sent (tests read it back)

  class ServerError extends Error {}

  async function call(method, path, body) {
    const headers = {};
    if (token) headers.Authorization = `Bearer ${token}`;
    const init = { method, headers };
    if (body instanceof FormData) {
      init.body = body;
    } else if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const start = performance.now();
    let response;
    try {
      response = await fetch(path, init);
    } catch (err) {
      throw new ServerError(`cannot reach the server (${err.message})`);
    }
    let data = null;
    try {
      data = await response.json();
    } catch (_) {
      data = null;
    }
    const ms = performance.now() - start;
    if (!response.ok) {
      const reason = data && data.error ? data.error : response.statusText;
      throw new ServerError(`${response.status}: ${reason}`);
    }
    return { data, ms };
  }

  const versionQuery = () => `?version=${encodeURIComponent($("version").value)}`;
  const modelPath = (route) => `/${route}/${encodeURIComponent($("model").value)}${versionQuery()}`;

  // -- results ------------------------------------------------------------------------------

  function setState(name) {
    $("result").dataset.state = name;
    state.busy = name === "busy";
    for (const id of ["predict", "generate", "predict-input", "predict-fields", "recommend",
                      "imagine"]) {
      $(id).disabled = state.busy;
    }
  }

  function showError(message) {
    $("error").textContent = message;
    $("error").hidden = false;
    setState("error");
  }

  function clearResult() {
    $("error").hidden = true;
    $("top-class").textContent = "";
    $("bars").replaceChildren();
    $("values").replaceChildren();
    $("recommended").replaceChildren();
    $("images").replaceChildren();
    $("answer-canvas").hidden = true;
    $("generated").hidden = true;
    $("generated-prompt").textContent = "";
    $("generated-text").textContent = "";
    for (const id of ["latency", "server-latency"]) $(id).textContent = "–";
    $("answered-by").textContent = "";
    delete $("result").dataset.topClass;
    setState("idle");
  }

  function showTiming(data, ms) {
    $("latency").textContent = ms.toFixed(1);
    $("latency").dataset.ms = ms.toFixed(3);
    $("server-latency").textContent = Number(data.latency_ms).toFixed(1);
    $("answered-by").textContent = `answered by ${data.model} v${data.version}`;
    $("result").dataset.version = data.version;
  }

  // -- answers, by the form the model declares -----------------------------------------------

  function bar(name, probability) {
    const pct = 100 * probability;
    const li = document.createElement("li");
    const label = document.createElement("span");
    label.className = "name";
    label.textContent = name;
    label.title = name;
    const track = document.createElement("span");
    track.className = "track";
    const fill = document.createElement("span");
    fill.className = "fill";
    fill.style.width = `${Math.max(0, Math.min(100, pct)).toFixed(1)}%`;
    track.append(fill);
    const value = document.createElement("span");
    value.className = "pct";
    value.textContent = `${pct.toFixed(1)}%`;
    li.append(label, track, value);
    return li;
  }

  function showTop(text) {
    $("top-class").textContent = text;
    $("result").dataset.topClass = text;
  }

  const ANSWERS = {
    // classes with probabilities, the likeliest first: bars
    ranking(answer) {
      const label = (a) => String(a.class ?? a.action ?? a.token ?? a.label ?? a.index);
      $("bars").replaceChildren(...answer.map((a) => bar(label(a), a.probability)));
      showTop(answer.length ? label(answer[0]) : "");
    },
    // a value per target: a table, the first value large
    values(answer) {
      const rows = answer.map((a) => {
        const tr = document.createElement("tr");
        const name = document.createElement("th");
        name.textContent = a.target;
        const value = document.createElement("td");
        value.className = "num";
        value.textContent = Number(a.value).toPrecision(4);
        tr.append(name, value);
        return tr;
      });
      $("values").replaceChildren(...rows);
      showTop(answer.length ? Number(answer[0].value).toPrecision(4) : "");
    },
  };

  // items for a user, the best first: titles with scores, and whether popularity stood in
  ANSWERS.recommendations = (answer) => {
    const rows = answer.items.map((a) => {
      const li = document.createElement("li");
      li.textContent = `${a.title} `;
      const score = document.createElement("span");
      score.className = "muted small";
      score.textContent = `(${a.item}, score ${Number(a.score).toFixed(3)})`;
      li.append(score);
      return li;
    });
    $("recommended").replaceChildren(...rows);
    const first = answer.items.length ? answer.items[0].title : "";
    showTop(answer.fallback ? `${first} · most popular (unknown user or empty history)` : first);
  };

  // generated images: each PNG, enlarged with its pixels kept sharp
  function generatedImage(answer) {
    const img = document.createElement("img");
    img.src = `data:image/png;base64,${answer.png}`;
    const [h, w] = answer.size;
    const scale = Math.max(1, Math.floor(112 / Math.max(h, w)));
    [img.width, img.height] = [w * scale, h * scale];
    img.alt = answer.seed === undefined ? "generated image" : `seed ${answer.seed}`;
    img.title = img.alt;
    return img;
  }

  ANSWERS.image = (answer) => {
    $("images").replaceChildren(generatedImage(answer));
    showTop("");
  };

  // masks and boxes: drawn over the image they answer, at the answer's size
  const COLOURS = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6"];

  async function answerCanvas(answer) {
    const [h, w] = answer.size;
    const out = $("answer-canvas");
    const scale = Math.min(1, 480 / w);
    out.width = Math.round(w * scale);
    out.height = Math.round(h * scale);
    const g = out.getContext("2d");
    // an upload as the browser shows it (EXIF-turned, as the server reads it), or what the
    // model was sent of a drawing
    const source = state.file && !state.drawn && state.bitmap ? state.bitmap : $("preview");
    g.drawImage(source, 0, 0, out.width, out.height);
    out.hidden = false;
    return { g, scale };
  }

  function bytes(b64) {
    return Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  }

  ANSWERS.mask = async (answer) => {
    const { g } = await answerCanvas(answer);
    const mask = await createImageBitmap(new Blob([bytes(answer.mask_png)], { type: "image/png" }));
    const layer = document.createElement("canvas");
    [layer.width, layer.height] = [mask.width, mask.height];
    const lg = layer.getContext("2d", { willReadFrequently: true });
    lg.drawImage(mask, 0, 0);
    const pixels = lg.getImageData(0, 0, mask.width, mask.height);
    for (let i = 0; i < pixels.data.length; i += 4) {
      const k = pixels.data[i]; // the class index, in every channel of a grey PNG
      const colour = COLOURS[(k - 1) % COLOURS.length];
      pixels.data[i + 3] = k > 0 ? 110 : 0;
      if (k > 0) {
        for (let c = 0; c < 3; c++) pixels.data[i + c] = parseInt(colour.slice(1 + 2 * c, 3 + 2 * c), 16);
      }
    }
    lg.putImageData(pixels, 0, 0);
    g.drawImage(layer, 0, 0, g.canvas.width, g.canvas.height);
    const shares = Object.entries(answer.shares).slice(1).sort((a, b) => b[1] - a[1]);
    showTop(shares.map(([name, share]) => `${name} ${(100 * share).toFixed(1)}%`).join(" · "));
  };

  ANSWERS.boxes = async (answer) => {
    const { g, scale } = await answerCanvas(answer);
    const classes = state.meta.classes || [];
    const counts = {};
    g.lineWidth = 2;
    g.font = "12px system-ui, sans-serif";
    for (const d of answer.detections) {
      const colour = COLOURS[Math.max(0, classes.indexOf(d.class)) % COLOURS.length];
      const [x1, y1, x2, y2] = d.box.map((v) => v * scale);
      g.strokeStyle = colour;
      g.fillStyle = colour;
      g.strokeRect(x1, y1, x2 - x1, y2 - y1);
      g.fillText(`${d.class} ${d.score.toFixed(2)}`, x1 + 2, Math.max(10, y1 - 3));
      counts[d.class] = (counts[d.class] || 0) + 1;
    }
    const found = Object.entries(counts).map(([name, n]) => `${name} ×${n}`).join(", ");
    showTop(`${answer.detections.length} found${found ? `: ${found}` : ""}`);
  };

  async function showPrediction(data, ms) {
    const show = ANSWERS[state.meta.answer.type] || ANSWERS.values;
    await show(data.predictions[0] || []);
    showTiming(data, ms);
    setState("done");
  }

  async function run(request) {
    if (state.busy) return;
    clearResult();
    setState("busy");
    try {
      await request();
    } catch (err) {
      showError(err instanceof ServerError ? err.message : `error: ${err.message}`);
    }
  }

  // -- models -------------------------------------------------------------------------------

  function option(value, text) {
    const o = document.createElement("option");
    o.value = value;
    o.textContent = text;
    return o;
  }

  async function loadModels() {
    const { data } = await call("GET", "/models");
    state.models = data.models;
    $("model").replaceChildren(
      ...state.models.map((m) => option(m.name, `${m.name} · ${m.task}`)),
    );
    const n = state.models.length;
    $("status").textContent = `${n} model${n === 1 ? "" : "s"} served`;
    if (n) await chooseModel();
  }

  async function chooseModel() {
    const model = state.models.find((m) => m.name === $("model").value);
    const versions = [...model.versions].sort((a, b) => b - a);
    $("version").replaceChildren(
      ...versions.map((v) => option(v, v === model.latest ? `${v} (latest)` : String(v))),
    );
    $("version").value = String(model.latest);
    await chooseVersion();
  }

  // The input panels, by the form of the model's input; a generating model gets the prompt.
  const PANELS = {
    image(form) {
      $("preview").width = form.width;
      $("preview").height = form.height;
      // small grey inputs are digits to draw; other models see photos and scans
      const digits = form.channels === 1 && Math.max(form.height, form.width) <= 32;
      $("image-title").textContent = digits
        ? "Draw a digit, or upload an image"
        : "Upload an image, or draw one";
      $("fit-label").hidden = !digits;
      $("fit").checked = digits;
      return "image-panel";
    },
    text() {
      $("input-title").textContent = "Text";
      $("input-hint").textContent = "";
      $("input-text").placeholder = "Type a sentence";
      state.parse = (text) => text;
      return "input-panel";
    },
    array(form) {
      $("input-title").textContent = "A sequence of numbers";
      $("input-hint").textContent = `JSON numbers, a (T, ${form.shape[form.shape.length - 1]}) array`;
      $("input-text").placeholder = JSON.stringify(form.example);
      state.parse = (text) => {
        try {
          return JSON.parse(text);
        } catch (err) {
          throw new ServerError(`the input is not JSON numbers (${err.message})`);
        }
      };
      return "input-panel";
    },
    fields(form) {
      const rows = form.fields.map((field) => {
        const label = document.createElement("label");
        label.textContent = field.name;
        if (field.options) {  // a categorical column: its training vocabulary
          const select = document.createElement("select");
          select.name = field.name;
          for (const value of field.options) {
            const option = document.createElement("option");
            option.value = option.textContent = value;
            select.append(option);
          }
          label.append(select);
          return label;
        }
        const input = document.createElement("input");
        input.type = "number";
        input.step = "any";
        input.name = field.name;
        input.value = String(Number(Number(field.mean).toPrecision(4)));  // 189900, not 1.899e+5
        input.title = `training mean ${field.mean.toPrecision(4)}, std ${field.std.toPrecision(4)}`;
        label.append(input);
        return label;
      });
      $("fields").replaceChildren(...rows);
      return "fields-panel";
    },
    latent(form) {
      $("latent-class").replaceChildren(...form.classes.map((c) => option(c, c)));
      $("latent-class-label").hidden = !form.classes.length;
      return "latent-panel";
    },
    history(form) {
      state.titles = new Map(form.items.map(([id, title]) => [id, title]));
      state.ids = new Map(form.items.map(([id, title]) => [title, id]));
      $("history-items").replaceChildren(...form.items.map(([id, title]) => option(title, id)));
      $("history-user").placeholder = form.example_user ? `e.g. ${form.example_user}` : "user id";
      setHistory([]);
      return "history-panel";
    },
  };

  function setHistory(ids) {
    state.history = ids;
    $("history-list").replaceChildren(
      ...ids.map((id) => {
        const li = document.createElement("li");
        li.textContent = state.titles.get(id) || id;
        return li;
      }),
    );
  }

  function addToHistory() {
    const typed = $("history-item").value.trim();
    if (!typed) return;
    const id = state.ids.get(typed) || typed; // a title picked from the list, or an id
    setHistory([...state.history, id]);
    $("history-item").value = "";
  }

  async function recommend() {
    await run(async () => {
      const input = {};
      const user = $("history-user").value.trim();
      if (user) input.user = user;
      if (state.history.length || !user) input.history = state.history;
      window.lastInput = { kind: "history", input };
      const { data, ms } = await call("POST", modelPath("predict"), { inputs: [input], top_k: 10 });
      await showPrediction(data, ms);
    });
  }

  async function chooseVersion() {
    clearResult();
    document.body.dataset.ready = "false";
    const asked = ++state.asked; // a later pick wins over a slower, earlier answer
    const path = `/models/${encodeURIComponent($("model").value)}${versionQuery()}`;
    const { data: meta } = await call("GET", path);
    if (asked !== state.asked) return;
    state.meta = meta;
    const input = meta.inputs[0];
    const shape = meta.input_shape ? `[${meta.input_shape.join(", ")}]` : "?";
    const classes = meta.classes && meta.classes.length ? ` · ${meta.classes.length} classes` : "";
    $("model-info").textContent =
      `${meta.task} · ${input.form.type} input ${shape}${classes} · ${meta.backend || ""} backend`;
    const panels = ["image-panel", "text-panel", "input-panel", "fields-panel", "history-panel"];
    for (const panel of panels) {
      $(panel).hidden = true;
    }
    const panel = meta.generates ? "text-panel" : PANELS[input.form.type](input.form);
    $(panel).hidden = false;
    document.body.dataset.ready = "true";
  }

  // -- drawing ------------------------------------------------------------------------------

  const canvas = $("canvas");
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  let last = null;

  function blank() {
    ctx.fillStyle = "#000";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
  }

  function at(event) {
    const rect = canvas.getBoundingClientRect();
    return {
      x: ((event.clientX - rect.left) * canvas.width) / rect.width,
      y: ((event.clientY - rect.top) * canvas.height) / rect.height,
    };
  }

  function stroke(to) {
    ctx.strokeStyle = "#fff";
    ctx.fillStyle = "#fff";
    ctx.lineWidth = canvas.width / 12;
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
    ctx.beginPath();
    if (last) {
      ctx.moveTo(last.x, last.y);
      ctx.lineTo(to.x, to.y);
      ctx.stroke();
    } else {
      ctx.arc(to.x, to.y, ctx.lineWidth / 2, 0, 2 * Math.PI);
      ctx.fill();
    }
    last = to;
  }

  canvas.addEventListener("pointerdown", (event) => {
    if (event.pointerType === "mouse" && event.button !== 0) return;
    event.preventDefault();
    canvas.setPointerCapture(event.pointerId);
    state.drawn = true; // drawing over an upload sends the drawing, not the file
    last = null;
    stroke(at(event));
  });
  canvas.addEventListener("pointermove", (event) => {
    if (!canvas.hasPointerCapture(event.pointerId)) return;
    const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [];
    for (const e of events.length ? events : [event]) stroke(at(e));
  });
  for (const name of ["pointerup", "pointercancel"]) {
    canvas.addEventListener(name, (event) => {
      if (!canvas.hasPointerCapture(event.pointerId)) return;
      canvas.releasePointerCapture(event.pointerId);
      last = null;
      modelInput(); // refresh "what the model sees"
    });
  }

  function clearCanvas() {
    blank();
    state.drawn = false;
    state.file = null;
    state.bitmap = null;
    $("file").value = "";
    modelInput();
    clearResult();
  }

  // The canvas -> the model's input size: [H][W] grey or [C][H][W] integers 0..255.
  // With "fit", the drawing's bounding box is scaled to 20/28 of the input and its centre of
  // mass put in the middle, as MNIST's digits were made.
  function modelInput() {
    const form = state.meta ? state.meta.inputs[0].form : { channels: 1, height: 28, width: 28 };
    const [channels, h, w] = [form.channels, form.height, form.width];
    const preview = $("preview");
    const out = preview.getContext("2d", { willReadFrequently: true });
    out.fillStyle = "#000";
    out.fillRect(0, 0, w, h);
    out.imageSmoothingEnabled = true;
    out.imageSmoothingQuality = "high";
    const upload = state.file && !state.drawn ? state.bitmap : null;
    const box = !upload && $("fit").checked ? inkBox() : null;
    if (upload) { // the server resizes the file itself to the input size: show that
      out.drawImage(upload, 0, 0, w, h);
    } else if (box) {
      const scale = (0.714 * Math.min(w, h)) / Math.max(box.w, box.h);
      const clamp = (v, lo, hi) => Math.max(lo, Math.min(hi, v));
      const dx = clamp(w / 2 - (box.cx - box.x) * scale, 0, w - box.w * scale);
      const dy = clamp(h / 2 - (box.cy - box.y) * scale, 0, h - box.h * scale);
      out.drawImage(canvas, box.x, box.y, box.w, box.h, dx, dy, box.w * scale, box.h * scale);
    } else {
      out.drawImage(canvas, 0, 0, w, h);
    }
    const rgba = out.getImageData(0, 0, w, h).data;
    const plane = (pick) =>
      Array.from({ length: h }, (_, y) =>
        Array.from({ length: w }, (_, x) => pick(4 * (y * w + x))),
      );
    if (channels === 1) {
      return plane((i) => Math.round(0.299 * rgba[i] + 0.587 * rgba[i + 1] + 0.114 * rgba[i + 2]));
    }
    return [0, 1, 2].slice(0, channels).map((c) => plane((i) => rgba[i + c]));
  }

  // The bounding box of the ink and its centre of mass, in canvas pixels (null when blank).
  function inkBox() {
    const { width, height } = canvas;
    const rgba = ctx.getImageData(0, 0, width, height).data;
    let x0 = width, y0 = height, x1 = -1, y1 = -1, mass = 0, mx = 0, my = 0;
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        const v = rgba[4 * (y * width + x)];
        if (v <= 8) continue;
        x0 = Math.min(x0, x); x1 = Math.max(x1, x);
        y0 = Math.min(y0, y); y1 = Math.max(y1, y);
        mass += v; mx += v * x; my += v * y;
      }
    }
    if (x1 < 0) return null;
    return { x: x0, y: y0, w: x1 - x0 + 1, h: y1 - y0 + 1, cx: mx / mass + 0.5, cy: my / mass + 0.5 };
  }

  async function showUpload(file) {
    blank();
    state.bitmap = null;
    try {
      const image = await createImageBitmap(file);
      state.bitmap = image;
      const scale = Math.min(canvas.width / image.width, canvas.height / image.height);
      const [w, h] = [image.width * scale, image.height * scale];
      ctx.drawImage(image, (canvas.width - w) / 2, (canvas.height - h) / 2, w, h);
    } catch (_) {
      // not an image the browser reads: send it anyway and show what the server says
    }
  }

  async function predictImage() {
    await run(async () => {
      const topK = Math.min(TOP_K, (state.meta.classes || []).length || TOP_K);
      const pixels = modelInput();
      let body;
      if (state.file && !state.drawn) {
        body = new FormData();
        body.append("file", state.file, state.file.name);
        body.append("top_k", String(topK));
        window.lastInput = { kind: "file", name: state.file.name };
      } else {
        body = { inputs: [pixels], top_k: topK };
        window.lastInput = { kind: "pixels", pixels };
      }
      const { data, ms } = await call("POST", modelPath("predict"), body);
      await showPrediction(data, ms);
    });
  }

  // -- text and number inputs -------------------------------------------------------------

  async function generate() {
    await run(async () => {
      const body = {
        prompt: $("prompt").value,
        max_tokens: Number($("max-tokens").value),
        temperature: Number($("temperature").value),
        seed: Number($("seed").value),
      };
      window.lastInput = { kind: "prompt", ...body };
      const { data, ms } = await call("POST", modelPath("generate"), body);
      $("generated-prompt").textContent = body.prompt;
      $("generated-text").textContent = data.text;
      $("generated").hidden = false;
      showTiming(data, ms);
      setState("done");
    });
  }

  async function predictInput() {
    await run(async () => {
      const input = state.parse($("input-text").value);
      window.lastInput = { kind: state.meta.inputs[0].form.type, input };
      const { data, ms } = await call("POST", modelPath("predict"), { inputs: [input], top_k: TOP_K });
      await showPrediction(data, ms);
    });
  }

  async function imagine() {
    await run(async () => {
      const body = { seed: Number($("latent-seed").value), count: Number($("latent-count").value) };
      if (!$("latent-class-label").hidden) body.class = $("latent-class").value;
      window.lastInput = { kind: "latent", ...body };
      const { data, ms } = await call("POST", modelPath("generate"), body);
      $("images").replaceChildren(...data.images.map(generatedImage));
      const kind = body.class === undefined ? "" : ` of class ${body.class}`;
      showTop(`${data.images.length} image${data.images.length === 1 ? "" : "s"}${kind}`);
      showTiming(data, ms);
      setState("done");
    });
  }

  async function predictFields() {
    await run(async () => {
      const input = {};
      for (const field of $("fields").querySelectorAll("select")) {
        input[field.name] = field.value;
      }
      for (const field of $("fields").querySelectorAll("input")) {
        if (field.value.trim() === "" || !Number.isFinite(Number(field.value))) {
          throw new ServerError(`${field.name}: give a number`);
        }
        input[field.name] = Number(field.value);
      }
      window.lastInput = { kind: "fields", input };
      const { data, ms } = await call("POST", modelPath("predict"), { inputs: [input] });
      await showPrediction(data, ms);
    });
  }

  // -- wiring -------------------------------------------------------------------------------

  $("model").addEventListener("change", () => chooseModel().catch((e) => showError(e.message)));
  $("version").addEventListener("change", () => chooseVersion().catch((e) => showError(e.message)));
  $("fit").addEventListener("change", () => modelInput());
  $("clear").addEventListener("click", clearCanvas);
  $("predict").addEventListener("click", predictImage);
  $("generate").addEventListener("click", generate);
  $("predict-input").addEventListener("click", predictInput);
  $("predict-fields").addEventListener("click", predictFields);
  $("history-add").addEventListener("click", addToHistory);
  $("history-item").addEventListener("keydown", (event) => {
    if (event.key === "Enter") addToHistory();
  });
  $("history-clear").addEventListener("click", () => setHistory([]));
  $("recommend").addEventListener("click", recommend);
  $("imagine").addEventListener("click", imagine);
  $("file").addEventListener("change", async () => {
    const file = $("file").files[0];
    if (!file) return;
    state.file = file;
    state.drawn = false;
    await showUpload(file);
    await predictImage();
  });

  blank();
  loadModels().catch((err) => {
    $("status").textContent = "no models";
    showError(err.message);
  });
})();
