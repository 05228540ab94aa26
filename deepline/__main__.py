from deepline.cli import main

main()
