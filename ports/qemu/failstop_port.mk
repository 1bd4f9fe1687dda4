# qemu (Cortex-M): the exception handlers the HAL takes over. The vector table in
# mcu/arm/startup.c refers to them from another file, so --wrap reaches them.
FAILSTOP_WRAP += NMI_Handler HardFault_Handler MemManage_Handler BusFault_Handler \
	UsageFault_Handler SysTick_Handler
