// Read and write rate of each disk, in bytes per second, over the last hour. Twin of disk-rates.influxql.
from(bucket: "telegraf")
  |> range(start: -1h)
  |> filter(fn: (r) => r._measurement == "vm_devices" and r.type == "disk")
  |> filter(fn: (r) => r._field == "read_bytes" or r._field == "write_bytes")
  |> group(columns: ["host", "vm", "device", "_field"])
  |> derivative(unit: 1s, nonNegative: true)
