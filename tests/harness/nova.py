"""What OpenStack Nova writes into a domain's XML, for the tests that read it."""

# Nova's NIC on Open vSwitch, as its LibvirtConfigGuestInterface writes it.
NOVA_OVS_NIC = """<interface type="bridge">
      <mac address="FA:16:3E:4C:2C:30"/>
      <model type="virtio"/>
      <driver name="vhost" rx_queue_size="512"/>
      <source bridge="br-int"/>
      <mtu size="1450"/>
      <target dev="tap8d7c6b5a-4e"/>
      <virtualport type="openvswitch">
        <parameters interfaceid="8d7c6b5a-4e3f-4a2b-9c1d-0e9f8a7b6c5d"/>
      </virtualport>
    </interface>"""
