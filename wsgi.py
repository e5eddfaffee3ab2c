"""The web process: `python wsgi.py --host HOST --port PORT` (Flask-SocketIO on eventlet).

Also the app for Flask's CLI: `flask --app wsgi db upgrade`, `flask --app wsgi booking ...`.
"""
if __name__ == "__main__":
    # First thing, and only when serving: the CLI and the workers stay unpatched.
    import eventlet
    eventlet.monkey_patch()

import argparse  # noqa: E402

from booking import create_app  # noqa: E402

app = create_app()


def main():
    parser = argparse.ArgumentParser(description="Serve Boxoffice (HTTP and Socket.IO).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000)
    args = parser.parse_args()

    from booking import lifecycle
    lifecycle.serve(app, args.host, args.port)


if __name__ == "__main__":
    main()
