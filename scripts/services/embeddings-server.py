#!/usr/bin/env python3
"""An OpenAI-compatible embeddings endpoint for the tests: POST /v1/embeddings, standard library only.

No model can be downloaded on the test machines, so this server stands in for a model server (OpenAI, vLLM,
Ollama, text-embeddings-inference) with the same wire format and the same error shapes. Embeddings are
deterministic: each lower-cased word is hashed (SHA-256) to a signed dimension, then the vector is normalized, so
texts that share words are close under cosine.

  POST /v1/embeddings   {"model": "test-...", "input": "text" | ["text", ...], "dimensions": n?, "encoding_format": "float"|"base64"}
                        -> {"object": "list", "data": [{"object": "embedding", "index": i, "embedding": [...]}], "model": ..., "usage": {...}}
                        Data items come in reverse order, so a client must use `index`.
                        Models whose name starts with "test-" exist; their native dimension is the number after the
                        last "-" if there is one (test-embed-48 -> 48), else 32. Others: 404 model_not_found.
                        An input containing the word "poison" is refused: 400 invalid_request_error.
                        A missing or wrong key (when started with --key): 401.
  POST /_control        {"model": m, "fail": n, "status": s, "retry_after": secs?}: the next n requests for model m
                        answer status s (with Retry-After when given). {"model": m, "delay": secs}: answer m slowly.
  GET  /_stats?model=m  {"requests": n, "inputs": n} for model m.
"""
import argparse, base64, hashlib, json, math, re, struct, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse, parse_qs

lock = threading.Lock()
faults = {}   # model -> {"fail": n, "status": s, "retry_after": x}
delays = {}   # model -> seconds
stats = {}    # model -> {"requests": n, "inputs": n}
API_KEY = None


def embed(text, dim):
    v = [0.0] * dim
    for word in re.findall(r"\w+", text.lower()):
        h = int.from_bytes(hashlib.sha256(word.encode()).digest()[:8], "big")
        v[h % dim] += 1.0 if (h >> 63) == 0 else -1.0
    n = math.sqrt(sum(x * x for x in v))
    return [x / n for x in v] if n > 0 else v


def native_dimension(model):
    m = re.search(r"-(\d+)$", model)
    return int(m.group(1)) if m else 32


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def reply(self, status, body, headers=None):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def error(self, status, message, kind="invalid_request_error", code=None, headers=None):
        self.reply(status, {"error": {"message": message, "type": kind, "param": None, "code": code}}, headers)

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        return json.loads(raw or b"{}")

    def do_GET(self):
        url = urlparse(self.path)
        if url.path == "/_stats":
            model = parse_qs(url.query).get("model", [""])[0]
            with lock:
                self.reply(200, stats.get(model, {"requests": 0, "inputs": 0}))
        elif url.path == "/health":
            self.reply(200, {"ok": True})
        else:
            self.error(404, "Unknown path " + url.path)

    def do_POST(self):
        path = urlparse(self.path).path
        try:
            body = self.body()
        except ValueError:
            return self.error(400, "We could not parse the JSON body of your request.")
        if path == "/_control":
            with lock:
                if "fail" in body:
                    faults[body["model"]] = {"fail": body["fail"], "status": body.get("status", 503), "retry_after": body.get("retry_after")}
                if "delay" in body:
                    delays[body["model"]] = body["delay"]
            return self.reply(200, {"ok": True})
        if path != "/v1/embeddings":
            return self.error(404, "Unknown path " + path)
        if API_KEY is not None and self.headers.get("Authorization") != "Bearer " + API_KEY:
            return self.error(401, "Incorrect API key provided.", code="invalid_api_key")
        model = body.get("model")
        if not isinstance(model, str) or not model.startswith("test-"):
            return self.error(404, "The model `%s` does not exist or you do not have access to it." % model, code="model_not_found")
        inputs = body.get("input")
        if isinstance(inputs, str):
            inputs = [inputs]
        if not isinstance(inputs, list) or not inputs or not all(isinstance(t, str) and t for t in inputs):
            return self.error(400, "'input' must be a non-empty string or a non-empty array of non-empty strings.")
        with lock:
            s = stats.setdefault(model, {"requests": 0, "inputs": 0})
            s["requests"] += 1
            s["inputs"] += len(inputs)
            fault = faults.get(model)
            if fault and fault["fail"] > 0:
                fault["fail"] -= 1
            else:
                fault = None
            delay = delays.get(model, 0)
        if delay:
            time.sleep(delay)
        if fault:
            headers = {"Retry-After": str(fault["retry_after"])} if fault.get("retry_after") is not None else None
            return self.error(fault["status"], "The server had an error while processing your request (injected).", kind="server_error", headers=headers)
        for i, t in enumerate(inputs):
            if re.search(r"\bpoison\b", t.lower()):
                return self.error(400, "Input %d contains content the model refuses." % i)
        dim = native_dimension(model)
        if body.get("dimensions") is not None:
            d = body["dimensions"]
            if not isinstance(d, int) or d < 1 or d > dim:
                return self.error(400, "This model does not support dimensions=%r (1 to %d)." % (d, dim))
            dim = d
        data = []
        for i, t in enumerate(inputs):
            v = embed(t, dim)
            if body.get("encoding_format") == "base64":
                v = base64.b64encode(struct.pack("<%df" % dim, *v)).decode()
            data.append({"object": "embedding", "index": i, "embedding": v})
        data.reverse()
        tokens = sum(len(t.split()) for t in inputs)
        self.reply(200, {"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})


def main():
    global API_KEY
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--key")
    args = ap.parse_args()
    API_KEY = args.key
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    print("embeddings server on 127.0.0.1:%d" % args.port, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
