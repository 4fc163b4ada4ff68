"""Executors' requests in worker processes: `[scheduler] worker_processes`.

`pool` is the daemon's side (a `Performer` over the children), `child` a
worker process's whole program, `wire` the socket pair's framing between
them. The daemon's start/stop story, with the workers in it, is in
`jobsd.daemon`.
"""
