# Frozen into the MPS2_AN385 firmware: the Python side of boot (flash filesystem).
freeze("$(BOARD_DIR)/../../firmware/frozen/MPS2_AN385", "_boot.py")
