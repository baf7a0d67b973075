"""``make bench``: kvm-telegraf side by side with collectd's virt plugin and the Prometheus libvirt exporter."""
