from approval_server.cli import main

main()
