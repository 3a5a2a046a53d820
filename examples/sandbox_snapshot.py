"""Snapshot `web-1` on the simulated cloud with plain openstacksdk and wait for it.

    .venv/bin/imagebot cloud-sim --port 8780 --speed 50 > /tmp/sim.txt &   # or python -m bot.cli
    sed -n '/^clouds:/,$p' /tmp/sim.txt > /tmp/clouds.yaml
    OS_CLIENT_CONFIG_FILE=/tmp/clouds.yaml .venv/bin/python examples/sandbox_snapshot.py
"""

from __future__ import annotations

import time

import openstack


def main() -> None:
    """Create an image of web-1, print task states while it runs, then wait for active."""
    conn = openstack.connect(cloud="sandbox")
    server = conn.compute.find_server("web-1", ignore_missing=False)
    image = conn.compute.create_server_image(server, "example-snapshot", wait=False)
    print(f"image {image.id} {image.status}")
    while (state := conn.compute.get_server(server.id).task_state) is not None:
        print(f"  task_state {state}")
        time.sleep(0.5)
    done = conn.image.wait_for_status(conn.image.get_image(image.id), "active", wait=60)
    print(f"image {done.id} {done.status}")


if __name__ == "__main__":
    main()
