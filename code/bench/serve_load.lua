-- wrk script of `dlbook bench --name serve_load`: every request POSTs the same JSON body
-- (a real MNIST test image, written by the benchmark to the file DLBOOK_WRK_BODY) to the
-- path DLBOOK_WRK_PATH, and `done` prints the latency distribution and the error counts
-- as `dlbook KEY VALUE` lines (microseconds) for the benchmark to read.
local f = assert(io.open(os.getenv("DLBOOK_WRK_BODY"), "rb"))
wrk.method = "POST"
wrk.path = os.getenv("DLBOOK_WRK_PATH")
wrk.body = f:read("*a")
f:close()
wrk.headers["content-type"] = "application/json"

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("dlbook requests %d\n", summary.requests))
  io.write(string.format("dlbook duration_us %d\n", summary.duration))
  io.write(string.format("dlbook non_2xx %d\n", e.status))
  io.write(string.format("dlbook socket_errors %d\n", e.connect + e.read + e.write))
  io.write(string.format("dlbook timeouts %d\n", e.timeout))
  for _, p in ipairs({50, 75, 90, 95, 99, 99.9, 99.99}) do
    io.write(string.format("dlbook p%g_us %d\n", p, latency:percentile(p)))
  end
  io.write(string.format("dlbook max_us %d\n", latency.max))
end
