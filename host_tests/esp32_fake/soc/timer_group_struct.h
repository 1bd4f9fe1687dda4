// FAKE (host tests only): components/soc/<chip>/include/soc/timer_group_struct.h
#pragma once
typedef struct timg_dev_s timg_dev_t;
extern timg_dev_t TIMERG0;
extern timg_dev_t TIMERG1;
