from advlab.cli import main

main()
