from kvm_telegraf.cli import main

main(prog_name="kvm-telegraf")
