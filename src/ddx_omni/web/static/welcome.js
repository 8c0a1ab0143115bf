// Welcome page: status, model hot swap, and testers for chat, Responses and live speech. No framework.
'use strict';

(() => {
  const $ = (id) => document.getElementById(id);
  const SAMPLE_RATE = 16000;
  const FRAME_SAMPLES = 1024; // 64 ms at 16 kHz
  const STT_QUERY = 'encoding=linear16&sample_rate=16000&channels=1&interim_results=true';
  const WEATHER_PARAMETERS = {
    type: 'object',
    properties: { city: { type: 'string', description: 'City name' } },
    required: ['city'],
  };
  const CHAT_WEATHER_TOOL = {
    type: 'function',
    function: { name: 'get_weather', description: 'Current weather in a city', parameters: WEATHER_PARAMETERS },
  };
  // The Responses API takes function tools flat, not nested under `function`.
  const RESPONSES_WEATHER_TOOL = {
    type: 'function', name: 'get_weather', description: 'Current weather in a city', parameters: WEATHER_PARAMETERS,
  };

  const page = { chatHistory: [], previousResponseId: null, turns: 0, health: null, stt: null };

  // ---------- HTTP helpers ----------

  const apiUrl = (path) => new URL(path, document.baseURI).toString();

  function authHeaders(extra) {
    const headers = Object.assign({}, extra);
    const key = $('api-key').value.trim();
    if (key) headers.Authorization = 'Bearer ' + key;
    return headers;
  }

  class ApiFailure extends Error {
    constructor(status, code, message, detail) {
      super(message);
      this.status = status;
      this.code = code;
      this.detail = detail;
    }
  }

  // The server's envelope: {code, message, detail?} plus {error:{message,type,code,param}} on /v1 OpenAI routes.
  function failureFromBody(status, body, fallback) {
    const inner = body && typeof body.error === 'object' && body.error ? body.error : {};
    const code = (body && body.code) || inner.code || 'http_' + status;
    const message = (body && body.message) || inner.message || fallback;
    return new ApiFailure(status, code, message, body ? body.detail : undefined);
  }

  async function failureFrom(response) {
    let body = null;
    try { body = await response.json(); } catch (_) { /* not JSON: fall back to the status text */ }
    const failure = failureFromBody(response.status, body, response.statusText || 'request failed');
    failure.requestId = response.headers.get('x-request-id'); // to find the request in the server log
    return failure;
  }

  async function api(path, options) {
    const opts = options || {};
    const init = { method: opts.method || 'GET', headers: authHeaders(opts.body ? { 'Content-Type': 'application/json' } : {}) };
    if (opts.body) init.body = JSON.stringify(opts.body);
    const response = await fetch(apiUrl(path), init);
    if (!response.ok) throw await failureFrom(response);
    return response;
  }

  function describe(err) {
    if (err instanceof ApiFailure) {
      const status = err.status ? err.status + ' ' : '';
      let text = status + err.code + ': ' + err.message;
      if (err.detail !== undefined && err.detail !== null) {
        text += '\n' + (typeof err.detail === 'string' ? err.detail : JSON.stringify(err.detail));
      }
      if (err.requestId) text += '\nrequest id ' + err.requestId;
      return text;
    }
    return 'Network error: ' + (err && err.message ? err.message : String(err)) + ' (is the server running?)';
  }

  function showError(id, err) {
    const el = $(id);
    el.textContent = describe(err);
    el.hidden = false;
  }

  function clearError(id) {
    $(id).hidden = true;
    $(id).textContent = '';
  }

  // Server-sent events: `event:`/`data:` fields, events separated by a blank line (spec parsing).
  async function* sseEvents(response) {
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = '';
    let eventName = null;
    let data = [];
    for (;;) {
      const { value, done } = await reader.read();
      buffer += done ? decoder.decode() : decoder.decode(value, { stream: true });
      let newline;
      while ((newline = buffer.indexOf('\n')) >= 0) {
        let line = buffer.slice(0, newline);
        buffer = buffer.slice(newline + 1);
        if (line.endsWith('\r')) line = line.slice(0, -1);
        if (line === '') {
          if (data.length) yield { event: eventName, data: data.join('\n') };
          eventName = null;
          data = [];
          continue;
        }
        if (line.startsWith(':')) continue;
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        let val = colon < 0 ? '' : line.slice(colon + 1);
        if (val.startsWith(' ')) val = val.slice(1);
        if (field === 'event') eventName = val;
        else if (field === 'data') data.push(val);
      }
      if (done) break;
    }
    if (data.length) yield { event: eventName, data: data.join('\n') };
  }

  // ---------- DOM helpers ----------

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function bubble(logId, who, text) {
    const node = el('div', 'msg ' + (who === 'you' ? 'user' : 'assistant'));
    node.appendChild(el('span', 'who', who));
    const body = el('span', 'body', text || '');
    node.appendChild(body);
    const log = $(logId);
    log.appendChild(node);
    log.scrollTop = log.scrollHeight;
    return { node, body };
  }

  function toolCallNode(name, args, id) {
    const node = el('div', 'tool-call');
    node.appendChild(el('span', '', 'tool call '));
    node.appendChild(el('b', 'tool-name', name));
    node.appendChild(el('span', 'tool-args', '(' + args + ')'));
    if (id) node.appendChild(el('span', 'tool-id', '  id ' + id));
    return node;
  }

  function selectedModel() {
    return $('model-select').value || undefined;
  }

  function formatDuration(seconds) {
    if (typeof seconds !== 'number') return '–';
    let s = Math.floor(seconds);
    const d = Math.floor(s / 86400); s -= d * 86400;
    const h = Math.floor(s / 3600); s -= h * 3600;
    const m = Math.floor(s / 60); s -= m * 60;
    return (d ? d + ' d ' : '') + (d || h ? h + ' h ' : '') + (d || h || m ? m + ' min ' : '') + s + ' s';
  }

  // ---------- status ----------

  async function refreshStatus() {
    try {
      const response = await fetch(apiUrl('health'), { cache: 'no-store' });
      if (!response.ok) throw await failureFrom(response);
      const health = await response.json();
      page.health = health;
      renderStatus(health);
      clearError('status-error');
    } catch (err) {
      $('status-badge').dataset.status = 'unreachable';
      $('status-badge').textContent = 'unreachable';
      showError('status-error', err);
    }
  }

  function renderStatus(health) {
    const components = health.components || {};
    const llm = components.llm || {};
    const stt = components.stt || {};
    $('status-badge').dataset.status = health.status;
    $('status-badge').textContent = health.status;
    $('st-status').textContent = health.status;
    $('st-version').textContent = health.version || '–';
    $('st-uptime').textContent = formatDuration(health.uptime_s);
    $('st-model').textContent = (llm.model || '–') + (llm.mode ? ' (' + llm.mode + ' mode)' : '');
    let modelState = llm.model_state || llm.state || '–';
    if (llm.model_state === 'loading' && typeof llm.model_load_elapsed_ms === 'number') {
      modelState += ' for ' + (llm.model_load_elapsed_ms / 1000).toFixed(1) + ' s';
    }
    if (llm.model_error) modelState += ' — ' + llm.model_error;
    $('st-model-state').textContent = modelState;
    $('st-stt').textContent = (stt.engine || '–') + (stt.state ? ' (' + stt.state + ')' : '') + (stt.error ? ' — ' + stt.error : '');
    $('st-components').textContent = Object.keys(components)
      .map((name) => name + ': ' + (components[name] && components[name].state)).join(', ') || '–';
    $('load-btn').title = llm.mode === 'mock' ? 'Hot swap needs real mode: ddx-omni restart --real' : '';
  }

  // ---------- models ----------

  async function loadModels() {
    try {
      const list = await (await api('v1/models')).json();
      const select = $('model-select');
      select.textContent = '';
      for (const model of list.data || []) {
        const option = el('option', '', model.label ? model.label + ' — ' + model.id : model.id);
        option.value = model.id;
        option.dataset.info = JSON.stringify(model);
        select.appendChild(option);
      }
      const current = page.health && page.health.components && page.health.components.llm
        ? page.health.components.llm.model : null;
      if (current && [...select.options].some((o) => o.value === current)) select.value = current;
      showModelInfo();
      clearError('models-error');
    } catch (err) {
      showError('models-error', err);
    }
  }

  function showModelInfo() {
    const option = $('model-select').selectedOptions[0];
    if (!option || !option.dataset.info) { $('model-info').textContent = ''; return; }
    const m = JSON.parse(option.dataset.info);
    const facts = [];
    if (m.family) facts.push(m.family);
    if (m.total_params_b) facts.push(m.total_params_b + ' B params');
    if (m.quantization) facts.push(m.quantization);
    if (m.context_window) facts.push(m.context_window.toLocaleString('en') + ' tokens context');
    if (m.multimodal) facts.push('multimodal');
    $('model-info').textContent = facts.join(' · ');
  }

  async function loadSelectedModel() {
    const modelId = selectedModel();
    if (!modelId) return;
    const button = $('load-btn');
    button.disabled = true;
    clearError('models-error');
    $('load-result').hidden = true;
    const poll = setInterval(refreshStatus, 1000); // show the model state while it loads
    try {
      const result = await (await api('v1/models/load', { method: 'POST', body: { model_id: modelId } })).json();
      const note = result.swapped ? 'Loaded ' : 'Already loaded: ';
      $('load-result').textContent = note + modelId + (typeof result.load_ms === 'number' ? ' in ' + result.load_ms + ' ms' : '');
      $('load-result').hidden = false;
    } catch (err) {
      showError('models-error', err);
    } finally {
      clearInterval(poll);
      button.disabled = false;
      refreshStatus();
    }
  }

  // ---------- chat completions ----------

  async function sendChat(event) {
    event.preventDefault();
    const text = $('chat-input').value.trim();
    if (!text) return;
    clearError('chat-error');
    $('chat-send').disabled = true;
    $('chat-input').value = '';
    page.chatHistory.push({ role: 'user', content: text });
    bubble('chat-log', 'you', text);
    const reply = bubble('chat-log', 'assistant', '');
    const body = { messages: page.chatHistory, stream: true, stream_options: { include_usage: true } };
    if (selectedModel()) body.model = selectedModel();
    if ($('chat-tools').checked) body.tools = [CHAT_WEATHER_TOOL];
    const began = performance.now();
    let firstAt = null;
    let content = '';
    let finish = null;
    let usage = null;
    const calls = [];
    try {
      const response = await api('v1/chat/completions', { method: 'POST', body });
      for await (const ev of sseEvents(response)) {
        if (ev.data === '[DONE]') break;
        const chunk = JSON.parse(ev.data);
        if (chunk.error) throw failureFromBody(0, chunk, 'stream error');
        if (chunk.usage) usage = chunk.usage;
        for (const choice of chunk.choices || []) {
          const delta = choice.delta || {};
          if (delta.content) {
            firstAt = firstAt || performance.now();
            content += delta.content;
            reply.body.textContent = content;
          }
          for (const part of delta.tool_calls || []) {
            firstAt = firstAt || performance.now();
            const index = typeof part.index === 'number' ? part.index : calls.length;
            const slot = calls[index] || (calls[index] = { id: '', name: '', arguments: '' });
            const fn = part.function || {};
            if (part.id) slot.id = part.id;
            if (fn.name && !slot.name) slot.name = fn.name;
            if (fn.arguments) slot.arguments += fn.arguments;
          }
          if (choice.finish_reason) finish = choice.finish_reason;
        }
        renderToolCalls(reply.node, calls);
      }
      recordChatTurn(content, calls);
      if (!content && !calls.length) reply.body.textContent = '(empty reply)';
      $('chat-stats').textContent = chatStats(began, firstAt, finish, usage);
    } catch (err) {
      reply.body.textContent = content || '(no reply)';
      showError('chat-error', err);
    } finally {
      $('chat-send').disabled = false;
    }
  }

  function renderToolCalls(node, calls) {
    node.querySelectorAll('.tool-call').forEach((n) => n.remove());
    for (const call of calls) if (call) node.appendChild(toolCallNode(call.name, call.arguments, call.id));
  }

  function recordChatTurn(content, calls) {
    const done = calls.filter(Boolean);
    const message = { role: 'assistant', content: content || null };
    if (done.length) {
      message.tool_calls = done.map((c) => ({ id: c.id, type: 'function', function: { name: c.name, arguments: c.arguments } }));
    }
    page.chatHistory.push(message);
    // The page runs no tools: answer each call so that the next turn is a valid conversation.
    for (const call of done) {
      page.chatHistory.push({ role: 'tool', tool_call_id: call.id, content: '{"note":"the welcome page does not run tools"}' });
    }
  }

  function chatStats(began, firstAt, finish, usage) {
    const parts = ['finish: ' + (finish || '–')];
    if (firstAt) parts.push('first token ' + Math.round(firstAt - began) + ' ms');
    if (usage) {
      parts.push(usage.prompt_tokens + ' prompt + ' + usage.completion_tokens + ' completion tokens');
      const seconds = (performance.now() - (firstAt || began)) / 1000;
      // decode speed after the first token; meaningless when everything came in one burst
      if (usage.completion_tokens > 1 && seconds >= 0.1) parts.push(((usage.completion_tokens - 1) / seconds).toFixed(1) + ' tok/s');
    }
    return parts.join(' · ');
  }

  function clearChat() {
    page.chatHistory = [];
    $('chat-log').textContent = '';
    $('chat-stats').textContent = '';
    clearError('chat-error');
  }

  // ---------- Responses ----------

  async function sendResponse(event) {
    event.preventDefault();
    const text = $('resp-input').value.trim();
    if (!text) return;
    clearError('resp-error');
    $('resp-send').disabled = true;
    $('resp-input').value = '';
    bubble('resp-log', 'you', text);
    const reply = bubble('resp-log', 'assistant', '');
    const stream = $('resp-stream').checked;
    const body = { input: text, store: true, stream };
    if (selectedModel()) body.model = selectedModel();
    if (page.previousResponseId) body.previous_response_id = page.previousResponseId;
    if ($('resp-tools').checked) body.tools = [RESPONSES_WEATHER_TOOL];
    try {
      const response = await api('v1/responses', { method: 'POST', body });
      const final = stream ? await readResponseStream(response, reply) : await response.json();
      if (!final) throw new ApiFailure(0, 'stream_incomplete', 'the stream ended without response.completed');
      renderResponse(reply, final);
      page.previousResponseId = final.id;
      page.turns += 1;
      $('resp-chain').textContent = 'Turn ' + page.turns + ' · last id ' + final.id + ' · status ' + final.status
        + (final.usage ? ' · ' + final.usage.total_tokens + ' tokens' : '') + ' — the next turn sends it as previous_response_id.';
      if (final.status === 'failed' && final.error) throw failureFromBody(0, final.error, 'response failed');
    } catch (err) {
      if (!reply.body.textContent) reply.body.textContent = '(no reply)';
      showError('resp-error', err);
    } finally {
      $('resp-send').disabled = false;
    }
  }

  async function readResponseStream(response, reply) {
    let text = '';
    for await (const ev of sseEvents(response)) {
      if (ev.data === '[DONE]') break;
      const data = JSON.parse(ev.data);
      const type = data.type || ev.event;
      if (type === 'error') throw failureFromBody(0, data, 'stream error');
      if (type === 'response.output_text.delta') {
        text += data.delta || '';
        reply.body.textContent = text;
      } else if (type === 'response.output_item.done' && data.item && data.item.type === 'function_call') {
        reply.node.appendChild(toolCallNode(data.item.name, data.item.arguments, data.item.call_id));
      } else if (type === 'response.completed' || type === 'response.incomplete' || type === 'response.failed') {
        return data.response;
      }
    }
    return null;
  }

  function renderResponse(reply, final) {
    const texts = [];
    reply.node.querySelectorAll('.tool-call').forEach((n) => n.remove());
    for (const item of final.output || []) {
      if (item.type === 'message') {
        for (const part of item.content || []) {
          if (part.type === 'output_text') texts.push(part.text);
          else if (part.type === 'refusal') texts.push('(refusal) ' + part.refusal);
        }
      } else if (item.type === 'function_call') {
        reply.node.appendChild(toolCallNode(item.name, item.arguments, item.call_id));
      } else {
        reply.node.appendChild(el('div', 'tool-call', item.type + (item.status ? ' (' + item.status + ')' : '')));
      }
    }
    reply.body.textContent = texts.join('\n') || (final.output && final.output.length ? '' : '(no output)');
    const who = reply.node.querySelector('.who');
    who.textContent = 'assistant · ' + final.id;
  }

  function newConversation() {
    page.previousResponseId = null;
    page.turns = 0;
    $('resp-log').textContent = '';
    $('resp-chain').textContent = 'New conversation.';
    clearError('resp-error');
  }

  // ---------- live speech ----------

  function sttUrl() {
    const language = $('stt-language').value;
    const url = new URL('v1/listen/dg?' + STT_QUERY + (language ? '&language=' + language : ''), document.baseURI);
    url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
    return url.toString();
  }

  const CLOSE_MEANINGS = {
    1000: 'closed normally', 1001: 'the server is going away (stopping)', 1003: 'audio the server cannot decode',
    1006: 'connection lost or refused (wrong or missing API key? server down?)', 1008: 'refused by policy',
    1011: 'server error or idle timeout',
  };

  function setSttStatus(text) {
    $('stt-status').textContent = text;
  }

  // Opens the socket; resolves when open. Browsers cannot set headers: the key goes as subprotocol `token, <key>`.
  function openStt() {
    const key = $('api-key').value.trim();
    const ws = key ? new WebSocket(sttUrl(), ['token', key]) : new WebSocket(sttUrl());
    ws.binaryType = 'arraybuffer';
    $('stt-interim').textContent = '';
    $('stt-interim').dataset.count = '0';
    clearError('stt-error');
    let opened = false;
    const closed = new Promise((resolve) => {
      ws.addEventListener('close', (ev) => {
        const meaning = CLOSE_MEANINGS[ev.code] || '';
        const text = 'Closed ' + ev.code + (ev.reason ? ' ' + ev.reason : '') + (meaning ? ' — ' + meaning : '');
        if (ev.code === 1000) setSttStatus(text + '.');
        else showError('stt-error', new ApiFailure(0, 'ws_' + ev.code, (ev.reason || meaning || 'closed') + (opened ? '' : ' (handshake failed)')));
        if (ev.code !== 1000) setSttStatus(text);
        page.stt = null;
        setMicButton(false);
        resolve(ev);
      });
    });
    ws.addEventListener('message', (ev) => {
      if (typeof ev.data !== 'string') return;
      try { handleSttFrame(JSON.parse(ev.data)); } catch (_) { /* a non-JSON frame is not ours to show */ }
    });
    return new Promise((resolve, reject) => {
      ws.addEventListener('open', () => { opened = true; setSttStatus('Connected; streaming audio…'); resolve({ ws, closed }); }, { once: true });
      closed.then((ev) => {
        if (!opened) reject(new ApiFailure(0, 'ws_' + ev.code, 'the server refused the speech socket or is down (a wrong or missing API key is refused with HTTP 403 before the handshake)'));
      });
    });
  }

  function handleSttFrame(frame) {
    if (frame.type === 'Results') {
      const alt = frame.channel && frame.channel.alternatives && frame.channel.alternatives[0];
      const transcript = alt ? alt.transcript : '';
      if (frame.is_final) {
        if (transcript) $('stt-final').appendChild(el('p', 'final', transcript));
        $('stt-interim').textContent = '';
      } else {
        $('stt-interim').textContent = transcript;
        // how many interim results arrived (shown in the status line; read by the browser test)
        $('stt-interim').dataset.count = String(Number($('stt-interim').dataset.count || 0) + 1);
      }
    } else if (frame.type === 'Metadata') {
      setSttStatus('Metadata: request ' + frame.request_id + (frame.duration ? ', ' + frame.duration.toFixed(2) + ' s of audio' : ''));
    } else if (frame.type === 'SpeechStarted') {
      setSttStatus('Speech started at ' + Number(frame.timestamp).toFixed(2) + ' s');
    } else if (frame.type === 'UtteranceEnd') {
      setSttStatus('Utterance ended at ' + Number(frame.last_word_end).toFixed(2) + ' s');
    }
  }

  function floatToInt16(samples) {
    const out = new Int16Array(samples.length);
    for (let i = 0; i < samples.length; i++) {
      const s = Math.max(-1, Math.min(1, samples[i]));
      out[i] = s < 0 ? s * 0x8000 : s * 0x7fff;
    }
    return out;
  }

  // Streaming downsampler to 16 kHz: each output sample averages the input span it covers (a box filter
  // that keeps aliasing down for speech), carrying the remainder over to the next block.
  class Downsampler {
    constructor(inputRate) {
      this.ratio = inputRate / SAMPLE_RATE;
      this.pending = new Float32Array(0);
      this.offset = 0;
    }

    push(input) {
      const buffer = new Float32Array(this.pending.length + input.length);
      buffer.set(this.pending);
      buffer.set(input, this.pending.length);
      const out = [];
      let start = this.offset;
      while (start + this.ratio <= buffer.length) {
        const a = Math.floor(start);
        const b = Math.max(a + 1, Math.floor(start + this.ratio));
        let sum = 0;
        for (let k = a; k < b; k++) sum += buffer[k];
        out.push(sum / (b - a));
        start += this.ratio;
      }
      const keep = Math.floor(start);
      this.pending = buffer.slice(keep);
      this.offset = start - keep;
      return floatToInt16(out);
    }
  }

  // Groups int16 samples into 64 ms frames for the socket.
  class Framer {
    constructor(send) {
      this.send = send;
      this.buffer = new Int16Array(FRAME_SAMPLES);
      this.used = 0;
    }

    push(samples) {
      let i = 0;
      while (i < samples.length) {
        const n = Math.min(FRAME_SAMPLES - this.used, samples.length - i);
        this.buffer.set(samples.subarray(i, i + n), this.used);
        this.used += n;
        i += n;
        if (this.used === FRAME_SAMPLES) this.flush();
      }
    }

    flush() {
      if (this.used) this.send(this.buffer.slice(0, this.used).buffer);
      this.used = 0;
    }
  }

  // decodeAudioData on a 16 kHz context resamples; rendering through a mono context downmixes.
  async function decodeTo16kMono(encoded) {
    const decoded = await new OfflineAudioContext(1, 1, SAMPLE_RATE).decodeAudioData(encoded);
    const length = Math.max(1, Math.ceil(decoded.duration * SAMPLE_RATE));
    const context = new OfflineAudioContext(1, length, SAMPLE_RATE);
    const source = context.createBufferSource();
    source.buffer = decoded;
    source.connect(context.destination);
    source.start();
    const rendered = await context.startRendering();
    return floatToInt16(rendered.getChannelData(0));
  }

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  async function streamFile() {
    const file = $('stt-file').files[0];
    if (!file) return;
    if (page.stt) { showError('stt-error', new ApiFailure(0, 'busy', 'a speech session is already running')); return; }
    $('stt-final').textContent = '';
    clearError('stt-error');
    try {
      setSttStatus('Decoding ' + file.name + '…');
      const pcm = await decodeTo16kMono(await file.arrayBuffer());
      const { ws, closed } = await openStt();
      page.stt = { ws, stop: () => {} };
      const realtime = $('stt-realtime').checked;
      const began = performance.now();
      for (let i = 0; i < pcm.length && ws.readyState === WebSocket.OPEN; i += FRAME_SAMPLES) {
        ws.send(pcm.slice(i, i + FRAME_SAMPLES).buffer);
        const sentMs = ((i + FRAME_SAMPLES) / SAMPLE_RATE) * 1000;
        if (realtime) await sleep(Math.max(0, sentMs - (performance.now() - began)));
        else if (ws.bufferedAmount > 1 << 20) await sleep(20);
      }
      if (ws.readyState === WebSocket.OPEN) {
        ws.send(JSON.stringify({ type: 'CloseStream' }));
        setSttStatus('Sent ' + (pcm.length / SAMPLE_RATE).toFixed(2) + ' s of audio; waiting for the final transcript…');
      }
      await closed;
    } catch (err) {
      showError('stt-error', err instanceof ApiFailure ? err : new ApiFailure(0, 'audio', 'cannot stream this file: ' + err.message));
      page.stt = null;
    } finally {
      $('stt-file').value = '';
    }
  }

  function setMicButton(on) {
    $('mic-btn').textContent = on ? 'Stop microphone' : 'Start microphone';
  }

  async function toggleMic() {
    if (page.stt) { page.stt.stop(); return; }
    clearError('stt-error');
    if (!window.isSecureContext || !navigator.mediaDevices) {
      showError('stt-error', new ApiFailure(0, 'insecure_context', 'browsers allow the microphone only on https:// or http://localhost; stream a file instead, or open this page through https'));
      return;
    }
    let media = null;
    let context = null;
    try {
      media = await navigator.mediaDevices.getUserMedia({ audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true } });
      const { ws } = await openStt();
      context = new AudioContext();
      const downsampler = new Downsampler(context.sampleRate);
      const framer = new Framer((buffer) => { if (ws.readyState === WebSocket.OPEN) ws.send(buffer); });
      const onBlock = (block) => framer.push(downsampler.push(block));
      const source = context.createMediaStreamSource(media);
      const silent = context.createGain();
      silent.gain.value = 0; // the graph must reach the destination to be pulled; keep it silent
      silent.connect(context.destination);
      const node = await captureNode(context, onBlock);
      source.connect(node);
      node.connect(silent);
      const mediaRef = media;
      const contextRef = context;
      page.stt = {
        ws,
        stop: () => {
          mediaRef.getTracks().forEach((t) => t.stop());
          framer.flush();
          contextRef.close();
          if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: 'CloseStream' }));
          setSttStatus('Microphone stopped; waiting for the final transcript…');
        },
      };
      setMicButton(true);
      setSttStatus('Listening at ' + context.sampleRate + ' Hz, sent as 16 kHz…');
    } catch (err) {
      if (media) media.getTracks().forEach((t) => t.stop());
      if (context) context.close();
      showError('stt-error', err instanceof ApiFailure ? err : new ApiFailure(0, 'microphone', err.message || String(err)));
    }
  }

  // AudioWorklet where available (off the main thread), else the older ScriptProcessor.
  async function captureNode(context, onBlock) {
    if (context.audioWorklet && window.AudioWorkletNode) {
      await context.audioWorklet.addModule(apiUrl('static/pcm-worklet.js'));
      const node = new AudioWorkletNode(context, 'pcm-capture');
      node.port.onmessage = (ev) => onBlock(ev.data);
      return node;
    }
    const node = context.createScriptProcessor(4096, 1, 1);
    node.onaudioprocess = (ev) => onBlock(new Float32Array(ev.inputBuffer.getChannelData(0)));
    return node;
  }

  // ---------- wiring ----------

  function init() {
    $('model-select').addEventListener('change', showModelInfo);
    $('load-btn').addEventListener('click', loadSelectedModel);
    $('chat-form').addEventListener('submit', sendChat);
    $('chat-clear').addEventListener('click', clearChat);
    $('resp-form').addEventListener('submit', sendResponse);
    $('resp-new').addEventListener('click', newConversation);
    $('stt-file').addEventListener('change', streamFile);
    $('mic-btn').addEventListener('click', toggleMic);
    for (const [input, form] of [['chat-input', 'chat-form'], ['resp-input', 'resp-form']]) {
      // Enter sends, Shift+Enter makes a new line
      $(input).addEventListener('keydown', (ev) => {
        if (ev.key === 'Enter' && !ev.shiftKey) { ev.preventDefault(); $(form).requestSubmit(); }
      });
    }
    refreshStatus().then(loadModels);
    setInterval(() => { if (!document.hidden) refreshStatus(); }, 5000);
  }

  init();
})();
