# Frozen into the RPI_PICO firmware: the rp2 port's own modules (_boot.py mounts the
# flash filesystem, rp2.py) and asyncio. Nothing from micropython-lib (the stock
# manifest require()s onewire, ds18x20, dht, neopixel from it).
freeze("$(PORT_DIR)/modules")
include("$(MPY_DIR)/extmod/asyncio")
