"""kvm-telegraf: a Telegraf execd input for KVM hosts, one libvirt bulk read per cycle."""

__version__ = "0.2.0"
