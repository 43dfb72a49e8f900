"""The Docker SDK for Python against berthd: create, start, logs, exec, wait, remove
(and pull when a registry is given). Prints one line per check; exits non-zero on
the first failure."""
import sys

import docker

host = sys.argv[1]
client = docker.DockerClient(base_url=host, version="auto")
assert client.ping() is True
version = client.version()
assert version["ApiVersion"], version
print("version", version["ApiVersion"])

image = client.images.get("busybox:latest")
assert image.id.startswith("sha256:"), image.id
print("image", image.tags)

out = client.containers.run("busybox", ["sh", "-c", "echo from-sdk; echo err >&2"], remove=True)
assert out == b"from-sdk\n", out
print("run", out)

c = client.containers.create("busybox", ["sh", "-c", "echo started; exec sleep 1000"], name="sdk1",
                             environment={"A": "1"}, labels={"via": "sdk"})
c.start()
c.reload()
assert c.status == "running", c.status
assert c.labels["via"] == "sdk"
code, output = c.exec_run(["sh", "-c", "echo $A; exit 4"])
assert code == 4 and output == b"1\n", (code, output)
print("exec", code, output)
code, output = c.exec_run("cat", stdin=False, demux=True)
assert code == 0, code
logs = c.logs()
assert logs == b"started\n", logs
print("logs", logs)
assert [x.name for x in client.containers.list(filters={"label": "via=sdk"})] == ["sdk1"]
c.kill()
result = c.wait()
assert result["StatusCode"] == 137, result
print("wait", result)
c.remove()
try:
    client.containers.get("sdk1")
    raise AssertionError("sdk1 still exists")
except docker.errors.NotFound as e:
    print("removed", e.explanation)

if len(sys.argv) > 2:
    ref = sys.argv[2]
    pulled = client.images.pull(ref)
    print("pulled", pulled.id)
print("ok")
