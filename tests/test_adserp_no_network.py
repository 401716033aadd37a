"""import-adserp lays third-party HTML out in headless Chromium without any network request."""

from __future__ import annotations

import http.server
import threading

from chromium import needs_chromium
from fixate_rt.data.adserp.organic import OrganicBoxes


class _Counting(http.server.BaseHTTPRequestHandler):
    requests: list[str] = []

    def do_GET(self):  # noqa: N802 - http.server's naming
        type(self).requests.append(self.path)
        self.send_response(200)
        self.send_header("Content-Type", "text/css")
        self.end_headers()
        self.wfile.write(b"#rso > div { height: 500px; }")

    def log_message(self, *args):
        pass


@needs_chromium
def test_page_with_remote_resources_is_laid_out_without_any_connection(tmp_path):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Counting)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    port = server.server_address[1]
    try:
        page = tmp_path / "serp.html"
        page.write_text(f"""<!doctype html><html><head>
<link rel="stylesheet" href="http://127.0.0.1:{port}/style.css">
<link rel="stylesheet" href="http://localhost:{port}/other.css">
<script src="http://127.0.0.1:{port}/tracker.js"></script>
<link rel="stylesheet" href="https://www.gstatic.com/og/_/ss/k=og.qtm.x.css">
</head><body><div id="rso">
<div style="height:120px">first result <img src="http://127.0.0.1:{port}/pixel.png"></div>
<div style="height:80px">second result <iframe src="http://127.0.0.1:{port}/frame"></iframe></div>
</div><script>fetch("http://127.0.0.1:{port}/beacon").catch(() => 0)</script></body></html>""")
        with OrganicBoxes(tmp_path / "cache") as organic:
            payload = organic.boxes(page, 1422)
    finally:
        server.shutdown()
    assert _Counting.requests == []  # not one request reached the local server (nor, so, anything farther)
    assert payload["found"] and [b[0] for b in payload["boxes"]] == [1, 2]
    heights = [round(b[4] - b[2]) for b in payload["boxes"]]
    assert heights[0] >= 120 and heights[1] >= 80 and max(heights) < 500  # the remote stylesheet never applied
