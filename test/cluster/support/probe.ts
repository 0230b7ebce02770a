/**
 * Connection probes from inside the cluster: a throwaway pod (the Python
 * runner image, already on the node) runs a small script through `kubectl exec`
 * and reports whether a TCP connect (and optionally an HTTP GET) to an address
 * got through, so a test can tell what a NetworkPolicy lets in.
 */
import { kubectl } from "../fixture.js";

/**
 * argv: host port [path]. A TCP connect with a 3 s deadline; with a path, an
 * HTTP/1.0 GET and the status line. Prints one line: the outcome and the ms.
 */
export const PROBE_SCRIPT = `
import socket, sys, time
host, port = sys.argv[1], int(sys.argv[2])
path = sys.argv[3] if len(sys.argv) > 3 else None
t = time.monotonic()
s = socket.socket()
s.settimeout(3)
try:
    s.connect((host, port))
    out = "connected"
    if path:
        s.sendall(("GET %s HTTP/1.0\\r\\nHost: %s\\r\\n\\r\\n" % (path, host)).encode())
        data = b""
        while b"\\r\\n" not in data:
            chunk = s.recv(256)
            if not chunk:
                break
            data += chunk
        out = "http " + data.split(b"\\r\\n")[0].decode(errors="replace")
except ConnectionRefusedError:
    out = "refused"
except socket.timeout:
    out = "timeout"
except OSError as e:
    out = "error " + type(e).__name__
print(out, round((time.monotonic() - t) * 1000))
`;

/**
 * A prober pod: the runner image with an HTTP server on 8080 (which makes it
 * an ordinary target for other probers too), plus any extra labels.
 */
export function proberYaml(name: string, labels: Record<string, string> = {}): string {
  const all = { app: "netiso-prober", ...labels };
  return `
apiVersion: v1
kind: Pod
metadata: { name: ${name}, labels: ${JSON.stringify(all)} }
spec:
  terminationGracePeriodSeconds: 0
  automountServiceAccountToken: false
  containers:
    - name: prober
      image: faas-python-runner:latest
      imagePullPolicy: Never
      command: ["python3", "-m", "http.server", "8080", "--bind", "0.0.0.0", "--directory", "/tmp"]
      securityContext: { allowPrivilegeEscalation: false, capabilities: { drop: [ALL] } }
`;
}

export interface Probe {
  outcome: string;
  ms: number;
}

export async function probe(namespace: string, pod: string, host: string, port: number, path?: string): Promise<Probe> {
  const args = ["-n", namespace, "exec", pod, "--", "python3", "-c", PROBE_SCRIPT, host, String(port)];
  if (path) args.push(path);
  const { stdout } = await kubectl(args, { timeoutMs: 30_000 });
  const line = stdout.trim();
  const cut = line.lastIndexOf(" ");
  return { outcome: line.slice(0, cut), ms: Number(line.slice(cut + 1)) };
}

/** Refused or timed out: what a NetworkPolicy does to a connection it does not admit. */
export const blocked = (p: Probe): boolean => p.outcome === "refused" || p.outcome === "timeout";
