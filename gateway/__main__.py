from ztgw.gateway.cli import main

main()
