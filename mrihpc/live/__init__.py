"""Live plots in Visdom: offline page assets, a local server, a transport that never stalls
training, replay of the per-point call logs, and the SSH tunnel line."""
