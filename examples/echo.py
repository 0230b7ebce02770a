import os


def handle(req):
    """Echoes what it received: try
    curl -d '{"name":"ada"}' -H 'content-type: application/json' 'localhost:8000/invoke/echo/some/path?x=1'
    """
    body = None
    if req.body:
        body = req.json() if "json" in req.headers.get("content-type", "") else req.text
    return {
        "greeting": os.environ.get("GREETING", "hello"),
        "method": req.method,
        "path": req.path,
        "query": req.query,
        "body": body,
    }
