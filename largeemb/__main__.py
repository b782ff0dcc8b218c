from largeemb.cli import main

main()
