// failstop core: retained region, record ring, policy and the fault path.
// The fault path allocates nothing, runs no Python code and keeps its stack small.
#include <string.h>
#include "py/runtime.h"
#include "py/gc.h"
#include "py/cstack.h"
#include "failstop.h"
#include "failstop_frames.h"

static failstop_region_t *fs_region;
#if MICROPY_FAILSTOP_POLICY
static uint8_t fs_policy[FAILSTOP_KIND_MAX + 1]; // 0: default (REBOOT)
static bool fs_raise_recorded; // one RAISE record per boot
#endif
static failstop_record_t *fs_fault_rec; // record of the fault being handled
static volatile uint32_t fs_owner; // context that holds the fault path (0: free)
static bool fs_mark_ok; // the mark block is whole (checked at boot, kept by mark())
static volatile uint8_t fs_mark_writing; // mark() calls in progress (an IRQ may nest one)
volatile uint8_t failstop_converting;
#if MICROPY_FAILSTOP_RECOVERABLE
uint8_t failstop_recoverable[2];
_Static_assert(FAILSTOP_KIND_STACK == FAILSTOP_KIND_OOM + 1, "failstop_recoverable is indexed kind - OOM");
#endif
#if MICROPY_FAILSTOP_KEEPER
bool failstop_keeper_active;
#endif
#if MICROPY_FAILSTOP_INJECT
uintptr_t failstop_inject_addr;
bool failstop_inject_mark;
#endif
bool failstop_main_active;

const qstr_short_t failstop_kind_names[FAILSTOP_KIND_MAX + 1] = {
    MP_QSTRnull, MP_QSTR_PANIC, MP_QSTR_OOM, MP_QSTR_STACK, MP_QSTR_UNHANDLED,
    MP_QSTR_WATCHDOG, MP_QSTR_HARDFAULT, MP_QSTR_FATAL,
};
const qstr_short_t failstop_action_names[FAILSTOP_ACTION_RAISE + 1] = {
    MP_QSTRnull, MP_QSTR_REBOOT, MP_QSTR_HALT, MP_QSTR_RAISE,
};
_Static_assert(FAILSTOP_KIND_FATAL == 7 && FAILSTOP_KIND_MAX == FAILSTOP_KIND_FATAL, "failstop: one name per kind");

// CRC32 (IEEE, reflected). MICROPY_FAILSTOP_FAST: a byte per step from a 256-entry table
// (1 KiB of flash), aligned words read whole; otherwise a nibble per step from 16 entries.
#if MICROPY_FAILSTOP_FAST
static const uint32_t fs_crc_tab[256] = {
    0x00000000, 0x77073096, 0xee0e612c, 0x990951ba, 0x076dc419, 0x706af48f, 0xe963a535, 0x9e6495a3,
    0x0edb8832, 0x79dcb8a4, 0xe0d5e91e, 0x97d2d988, 0x09b64c2b, 0x7eb17cbd, 0xe7b82d07, 0x90bf1d91,
    0x1db71064, 0x6ab020f2, 0xf3b97148, 0x84be41de, 0x1adad47d, 0x6ddde4eb, 0xf4d4b551, 0x83d385c7,
    0x136c9856, 0x646ba8c0, 0xfd62f97a, 0x8a65c9ec, 0x14015c4f, 0x63066cd9, 0xfa0f3d63, 0x8d080df5,
    0x3b6e20c8, 0x4c69105e, 0xd56041e4, 0xa2677172, 0x3c03e4d1, 0x4b04d447, 0xd20d85fd, 0xa50ab56b,
    0x35b5a8fa, 0x42b2986c, 0xdbbbc9d6, 0xacbcf940, 0x32d86ce3, 0x45df5c75, 0xdcd60dcf, 0xabd13d59,
    0x26d930ac, 0x51de003a, 0xc8d75180, 0xbfd06116, 0x21b4f4b5, 0x56b3c423, 0xcfba9599, 0xb8bda50f,
    0x2802b89e, 0x5f058808, 0xc60cd9b2, 0xb10be924, 0x2f6f7c87, 0x58684c11, 0xc1611dab, 0xb6662d3d,
    0x76dc4190, 0x01db7106, 0x98d220bc, 0xefd5102a, 0x71b18589, 0x06b6b51f, 0x9fbfe4a5, 0xe8b8d433,
    0x7807c9a2, 0x0f00f934, 0x9609a88e, 0xe10e9818, 0x7f6a0dbb, 0x086d3d2d, 0x91646c97, 0xe6635c01,
    0x6b6b51f4, 0x1c6c6162, 0x856530d8, 0xf262004e, 0x6c0695ed, 0x1b01a57b, 0x8208f4c1, 0xf50fc457,
    0x65b0d9c6, 0x12b7e950, 0x8bbeb8ea, 0xfcb9887c, 0x62dd1ddf, 0x15da2d49, 0x8cd37cf3, 0xfbd44c65,
    0x4db26158, 0x3ab551ce, 0xa3bc0074, 0xd4bb30e2, 0x4adfa541, 0x3dd895d7, 0xa4d1c46d, 0xd3d6f4fb,
    0x4369e96a, 0x346ed9fc, 0xad678846, 0xda60b8d0, 0x44042d73, 0x33031de5, 0xaa0a4c5f, 0xdd0d7cc9,
    0x5005713c, 0x270241aa, 0xbe0b1010, 0xc90c2086, 0x5768b525, 0x206f85b3, 0xb966d409, 0xce61e49f,
    0x5edef90e, 0x29d9c998, 0xb0d09822, 0xc7d7a8b4, 0x59b33d17, 0x2eb40d81, 0xb7bd5c3b, 0xc0ba6cad,
    0xedb88320, 0x9abfb3b6, 0x03b6e20c, 0x74b1d29a, 0xead54739, 0x9dd277af, 0x04db2615, 0x73dc1683,
    0xe3630b12, 0x94643b84, 0x0d6d6a3e, 0x7a6a5aa8, 0xe40ecf0b, 0x9309ff9d, 0x0a00ae27, 0x7d079eb1,
    0xf00f9344, 0x8708a3d2, 0x1e01f268, 0x6906c2fe, 0xf762575d, 0x806567cb, 0x196c3671, 0x6e6b06e7,
    0xfed41b76, 0x89d32be0, 0x10da7a5a, 0x67dd4acc, 0xf9b9df6f, 0x8ebeeff9, 0x17b7be43, 0x60b08ed5,
    0xd6d6a3e8, 0xa1d1937e, 0x38d8c2c4, 0x4fdff252, 0xd1bb67f1, 0xa6bc5767, 0x3fb506dd, 0x48b2364b,
    0xd80d2bda, 0xaf0a1b4c, 0x36034af6, 0x41047a60, 0xdf60efc3, 0xa867df55, 0x316e8eef, 0x4669be79,
    0xcb61b38c, 0xbc66831a, 0x256fd2a0, 0x5268e236, 0xcc0c7795, 0xbb0b4703, 0x220216b9, 0x5505262f,
    0xc5ba3bbe, 0xb2bd0b28, 0x2bb45a92, 0x5cb36a04, 0xc2d7ffa7, 0xb5d0cf31, 0x2cd99e8b, 0x5bdeae1d,
    0x9b64c2b0, 0xec63f226, 0x756aa39c, 0x026d930a, 0x9c0906a9, 0xeb0e363f, 0x72076785, 0x05005713,
    0x95bf4a82, 0xe2b87a14, 0x7bb12bae, 0x0cb61b38, 0x92d28e9b, 0xe5d5be0d, 0x7cdcefb7, 0x0bdbdf21,
    0x86d3d2d4, 0xf1d4e242, 0x68ddb3f8, 0x1fda836e, 0x81be16cd, 0xf6b9265b, 0x6fb077e1, 0x18b74777,
    0x88085ae6, 0xff0f6a70, 0x66063bca, 0x11010b5c, 0x8f659eff, 0xf862ae69, 0x616bffd3, 0x166ccf45,
    0xa00ae278, 0xd70dd2ee, 0x4e048354, 0x3903b3c2, 0xa7672661, 0xd06016f7, 0x4969474d, 0x3e6e77db,
    0xaed16a4a, 0xd9d65adc, 0x40df0b66, 0x37d83bf0, 0xa9bcae53, 0xdebb9ec5, 0x47b2cf7f, 0x30b5ffe9,
    0xbdbdf21c, 0xcabac28a, 0x53b39330, 0x24b4a3a6, 0xbad03605, 0xcdd70693, 0x54de5729, 0x23d967bf,
    0xb3667a2e, 0xc4614ab8, 0x5d681b02, 0x2a6f2b94, 0xb40bbe37, 0xc30c8ea1, 0x5a05df1b, 0x2d02ef8d,
};

static MP_ALWAYSINLINE inline uint32_t fs_crc_byte(uint32_t c) {
    return (c >> 8) ^ fs_crc_tab[c & 0xff];
}
#else
static const uint32_t fs_crc_tab[16] = {
    0x00000000, 0x1db71064, 0x3b6e20c8, 0x26d930ac, 0x76dc4190, 0x6b6b51f4, 0x4db26158, 0x5005713c,
    0xedb88320, 0xf00f9344, 0xd6d6a3e8, 0xcb61b38c, 0x9b64c2b0, 0x86d3d2d4, 0xa00ae278, 0xbdbdf21c,
};
static MP_ALWAYSINLINE inline uint32_t fs_crc_byte(uint32_t c) {
    c = (c >> 4) ^ fs_crc_tab[c & 15];
    return (c >> 4) ^ fs_crc_tab[c & 15];
}
#endif

// Orders stores to retained RAM: the compiler must not move the magic write.
#define FS_BARRIER() __atomic_signal_fence(__ATOMIC_SEQ_CST)

// Words read out of byte data (records, the allocation table): may alias anything.
typedef uint32_t __attribute__((may_alias)) fs_u32_alias_t;
typedef uintptr_t __attribute__((may_alias)) fs_uptr_alias_t;

static uint32_t fs_crc_update(uint32_t crc, const void *data, size_t len) {
    const uint8_t *p = data;
    #if MICROPY_FAILSTOP_FAST
    for (; len > 0 && ((uintptr_t)p & 3); --len) {
        crc = fs_crc_byte(crc ^ *p++);
    }
    // Two aligned words a step (the record and the header are multiples of 8 bytes).
    for (const uint8_t *end = p + (len & ~(size_t)7); p != end; p += 8) {
        crc ^= *(const fs_u32_alias_t *)p; // little-endian (static assert in failstop.h)
        crc = fs_crc_byte(crc);
        crc = fs_crc_byte(crc);
        crc = fs_crc_byte(crc);
        crc = fs_crc_byte(crc);
        crc ^= *(const fs_u32_alias_t *)(p + 4);
        crc = fs_crc_byte(crc);
        crc = fs_crc_byte(crc);
        crc = fs_crc_byte(crc);
        crc = fs_crc_byte(crc);
    }
    len &= 7;
    #endif
    for (; len > 0; --len) {
        crc = fs_crc_byte(crc ^ *p++);
    }
    return crc;
}

uint32_t failstop_crc32(const void *data, size_t len) {
    return ~fs_crc_update(0xffffffff, data, len);
}

failstop_region_t *failstop_region(void) {
    return fs_region;
}

bool failstop_slot_valid(const failstop_record_t *r) {
    return r->magic == FAILSTOP_SLOT_MAGIC && r->version == FAILSTOP_FORMAT_VERSION
           && r->crc == failstop_crc32(r, offsetof(failstop_record_t, crc));
}

void failstop_header_commit(void) {
    failstop_header_t *h = &fs_region->hdr;
    h->crc = failstop_crc32(h, offsetof(failstop_header_t, crc));
}

static bool fs_mark_valid(const failstop_header_t *h) {
    return h->mark_crc == failstop_crc32(h->mark, sizeof(h->mark));
}

void failstop_mark_get(char *out) {
    const failstop_header_t *h = &fs_region->hdr;
    if (fs_mark_valid(h)) {
        memcpy(out, h->mark, sizeof(h->mark));
    } else {
        memset(out, 0, sizeof(h->mark));
    }
}

// The fault path's copy of the mark, without its CRC: the block was checked at boot and
// every mark() since left it whole, unless the fault interrupted one (then it is torn).
static void fs_mark_copy(char *out) {
    if (fs_mark_ok && fs_mark_writing == 0) {
        memcpy(out, fs_region->hdr.mark, sizeof(fs_region->hdr.mark));
    }
}

static void fs_write(const char *s) {
    failstop_hal_write(s, strlen(s));
}

#if MICROPY_FAILSTOP_BANNER
// A static qstr (a kind or action name): its bytes are in ROM, nothing is looked up.
static void fs_write_qstr(qstr q) {
    size_t len;
    const byte *s = qstr_data(q, &len);
    failstop_hal_write((const char *)s, len);
}
#endif

// Decimal digits of v, written backwards ending at `end`; returns the first digit.
char *failstop_utoa(char *end, mp_uint_t v) {
    do {
        *--end = '0' + v % 10;
        v /= 10;
    } while (v);
    return end;
}

#if MICROPY_FAILSTOP_UNHANDLED || MICROPY_FAILSTOP_BANNER
static void fs_write_uint(uint32_t v) {
    char buf[11];
    char *p = failstop_utoa(buf + sizeof(buf), v);
    failstop_hal_write(p, buf + sizeof(buf) - p);
}

// Device text on the console: control characters become '?', so a banner stays one line.
static void fs_write_field(const char *s, size_t cap) {
    for (size_t i = 0; i < cap && s[i]; ++i) {
        char c = ((uint8_t)s[i] < 0x20 || s[i] == 0x7f) ? '?' : s[i];
        failstop_hal_write(&c, 1);
    }
}
#endif

// Copy the head of a string; cut at a UTF-8 character boundary. True if cut.
static bool fs_text_head(char *dst, size_t cap, const char *src, size_t len) {
    bool cut = len > cap;
    if (cut) {
        len = cap;
        while (len > 0 && ((uint8_t)src[len] & 0xc0) == 0x80) {
            --len;
        }
    }
    memcpy(dst, src, len);
    return cut;
}

// Copy the tail of a string (a path keeps its file name). True if cut.
static bool fs_text_tail(char *dst, size_t cap, const char *src, size_t len) {
    if (len <= cap) {
        memcpy(dst, src, len);
        return false;
    }
    src += len - cap;
    len = cap;
    while (len > 0 && ((uint8_t)*src & 0xc0) == 0x80) {
        ++src;
        --len;
    }
    memcpy(dst, src, len);
    return true;
}

static bool fs_qstr_head(char *dst, size_t cap, qstr q) {
    size_t len;
    const char *s = (const char *)qstr_data(q, &len);
    return fs_text_head(dst, cap, s, len);
}

#if MICROPY_FAILSTOP_HEAP_FREE
// The free-heap figure: count the used (nonzero) 2-bit entries of the GC allocation table
// without a popcount instruction (Cortex-M0+ has none). Per word, each entry's two bits are
// ORed into its low bit; three words are summed in the 2-bit fields (at most 3 each), then
// folded into nibbles and bytes, which add up over 21 triples before the bytes are summed
// with one multiply: about 8 operations a word (MICROPY_FAILSTOP_FAST; else a word at a time).
#define FS_M1 ((uintptr_t)0x5555555555555555ull)
#define FS_M2 ((uintptr_t)0x3333333333333333ull)
#define FS_M4 ((uintptr_t)0x0f0f0f0f0f0f0f0full)
#define FS_M8 ((uintptr_t)0x00ff00ff00ff00ffull)
#define FS_H16 ((uintptr_t)0x0001000100010001ull)

// 1 in the low bit of each used entry.
static MP_ALWAYSINLINE inline uintptr_t fs_used_bits(uintptr_t x) {
    return (x | (x >> 1)) & FS_M1;
}

// Sum of the bytes of b: into 16-bit lanes, which one multiply adds up in the top lane.
static size_t fs_bytes_sum(uintptr_t b) {
    b = (b & FS_M8) + ((b >> 8) & FS_M8);
    return (b * FS_H16) >> (sizeof(uintptr_t) * 8 - 16);
}

// Count of 2-bit fields in a (each 0..3) folded to bytes.
static MP_ALWAYSINLINE inline uintptr_t fs_fold(uintptr_t a) {
    a = (a & FS_M2) + ((a >> 2) & FS_M2);
    return (a & FS_M4) + ((a >> 4) & FS_M4);
}

// Bytes of the table outside its aligned words (none when the heap is word-aligned).
static size_t fs_atb_bytes_used(const byte *p, size_t n) {
    size_t used = 0;
    while (n-- > 0) {
        used += fs_bytes_sum(fs_fold(fs_used_bits(*p++)));
    }
    return used;
}

static size_t fs_atb_used(const byte *p, size_t len) {
    size_t head = (0 - (uintptr_t)p) & (sizeof(uintptr_t) - 1);
    head = head < len ? head : len;
    size_t used = fs_atb_bytes_used(p, head);
    p += head;
    len -= head;
    const fs_uptr_alias_t *w = (const fs_uptr_alias_t *)p;
    size_t n = len / sizeof(uintptr_t);
    #if MICROPY_FAILSTOP_FAST
    // Three words a step; per-byte counts reach at most 12 a step, so 21 steps fit before
    // the bytes are summed.
    for (size_t steps = n / 3; steps > 0;) {
        size_t k = steps < 21 ? steps : 21;
        steps -= k;
        uintptr_t bytes = 0;
        do {
            bytes += fs_fold(fs_used_bits(w[0]) + fs_used_bits(w[1]) + fs_used_bits(w[2]));
            w += 3;
        } while (--k);
        used += fs_bytes_sum(bytes);
    }
    n %= 3;
    #endif
    for (; n > 0; --n) {
        used += fs_bytes_sum(fs_fold(fs_used_bits(*w++)));
    }
    return used + fs_atb_bytes_used((const byte *)w, len % sizeof(uintptr_t));
}

// Free GC heap, in bytes.
MP_NOINLINE static uint32_t fs_heap_free(void) {
    size_t free_blocks = 0;
    for (mp_state_mem_area_t *area = &MP_STATE_MEM(area); area != NULL;
         #if MICROPY_GC_SPLIT_HEAP
         area = area->next
         #else
         area = NULL
         #endif
         ) {
        size_t len = area->gc_alloc_table_byte_len;
        free_blocks += len * 4 - fs_atb_used(area->gc_alloc_table_start, len);
    }
    return free_blocks * MICROPY_BYTES_PER_GC_BLOCK;
}
#endif

#if MICROPY_FAILSTOP_OOM_TEXT
// MicroPython's MemoryError text, written straight into the record (it fits: 37 + 10
// digits + 6 < 64); without MICROPY_FAILSTOP_OOM_TEXT the host tools write it.
static void fs_oom_text(failstop_record_t *r) {
    static const char pre[] = "memory allocation failed, ";
    char *m = r->message;
    memcpy(m, pre, sizeof(pre) - 1);
    m += sizeof(pre) - 1;
    if (r->flags & FAILSTOP_FLAG_HEAP_LOCKED) {
        memcpy(m, "heap is locked", 14);
        return;
    }
    memcpy(m, "allocating ", 11);
    m += 11;
    char *end = m + 10;
    char *p = failstop_utoa(end, r->alloc_size);
    memmove(m, p, end - p);
    memcpy(m + (end - p), " bytes", 6);
}
_Static_assert(26 + 11 + 10 + 6 <= sizeof(((failstop_record_t *)0)->message), "failstop: OOM text fits");
#endif

static void fs_add_frame(failstop_record_t *r, qstr file, size_t line, qstr block) {
    if (r->depth < 255) {
        r->depth++;
    }
    if (r->nframes >= FAILSTOP_NFRAMES) {
        r->flags |= FAILSTOP_FLAG_TB_TRUNCATED;
        return;
    }
    failstop_frame_t *fr = &r->frames[r->nframes++];
    fr->line = line;
    size_t len;
    const char *s = (const char *)qstr_data(file, &len);
    bool cut = fs_text_tail(fr->file, sizeof(fr->file), s, len);
    cut |= fs_qstr_head(fr->func, sizeof(fr->func), block);
    if (cut) {
        r->flags |= FAILSTOP_FLAG_NAME_TRUNCATED;
    }
}

// Frames: the exception's own traceback first (innermost first), then the active
// bytecode frames outside it, from the shadow stack.
static void fs_capture_frames(failstop_record_t *r, mp_obj_t exc) {
    const failstop_vmframe_t *vf = failstop_vm_top;
    if (exc != MP_OBJ_NULL) {
        size_t n, *v;
        mp_obj_exception_get_traceback(exc, &n, &v);
        for (size_t i = 0; i + 2 < n; i += 3) {
            fs_add_frame(r, v[i], v[i + 1], v[i + 2]);
        }
        if (n != 0 && vf != NULL) {
            vf = vf->prev; // the innermost active frame is the traceback's last entry
        }
    }
    #if MICROPY_FAILSTOP_FAST
    const mp_code_state_t *prev = NULL;
    #endif
    for (; vf != NULL && r->nframes < FAILSTOP_NFRAMES; vf = vf->prev) {
        const mp_code_state_t *cs = vf->cs;
        #if MICROPY_FAILSTOP_FAST
        if (prev != NULL && cs->fun_bc == prev->fun_bc && cs->ip == prev->ip) {
            // Recursion, a STACK fault's usual shape: the same place as the frame before
            // (decoding depends on nothing else), so its decoded frame again.
            r->frames[r->nframes] = r->frames[r->nframes - 1];
            r->nframes++;
            r->depth++; // < 255: the frames before it were at most two
            continue;
        }
        prev = cs;
        #endif
        qstr file, block;
        size_t line = failstop_frame_decode(cs, &file, &block);
        fs_add_frame(r, file, line, block);
    }
    if (vf != NULL) {
        // The rest only counted (decoding costs ~300 instructions a frame), in a register;
        // MICROPY_FAILSTOP_FAST: four nodes a step with the cap tested once a step (deep
        // recursion: 175 nodes).
        size_t depth = r->depth;
        #if MICROPY_FAILSTOP_FAST
        while (depth < 255) { // vf: a node not counted yet
            const failstop_vmframe_t *a = vf->prev, *b, *c;
            if (a == NULL) {
                depth += 1;
                break;
            }
            if ((b = a->prev) == NULL) {
                depth += 2;
                break;
            }
            if ((c = b->prev) == NULL) {
                depth += 3;
                break;
            }
            depth += 4;
            if ((vf = c->prev) == NULL) {
                break;
            }
        }
        #else
        for (; vf != NULL && depth < 255; vf = vf->prev) {
            depth++;
        }
        #endif
        r->depth = depth < 255 ? depth : 255;
        r->flags |= FAILSTOP_FLAG_TB_TRUNCATED;
    }
    if (r->nframes == 0) {
        r->flags |= FAILSTOP_FLAG_NO_PYTHON_FRAME;
    }
}

// The slot a new record takes: an invalid one, else the oldest. A RAISE record (best
// effort) never evicts the evidence: only a RAISE record, or one the keeper has seen
// that is not the newest fail-stop record. NULL: no slot for it.
static failstop_record_t *fs_pick_slot(uint8_t action) {
    #if MICROPY_FAILSTOP_POLICY
    const failstop_header_t *h = &fs_region->hdr;
    bool raise = action == FAILSTOP_ACTION_RAISE;
    #else
    (void)action;
    #endif
    #if MICROPY_FAILSTOP_POLICY
    const failstop_record_t *newest_stop = NULL;
    #endif
    failstop_record_t *best = NULL;
    for (size_t i = 0; i < MICROPY_FAILSTOP_NSLOTS; ++i) {
        failstop_record_t *r = &fs_region->slot[i];
        // Magic and version only (no CRC on the fault path): a torn write clears the
        // magic first, so a slot with its magic is a committed record.
        if (r->magic != FAILSTOP_SLOT_MAGIC || r->version != FAILSTOP_FORMAT_VERSION) {
            return r;
        }
        #if MICROPY_FAILSTOP_POLICY
        if (r->action != FAILSTOP_ACTION_RAISE && (newest_stop == NULL || r->seq > newest_stop->seq)) {
            newest_stop = r;
        }
        #endif
    }
    for (size_t i = 0; i < MICROPY_FAILSTOP_NSLOTS; ++i) {
        failstop_record_t *r = &fs_region->slot[i];
        #if MICROPY_FAILSTOP_POLICY
        if (raise && r->action != FAILSTOP_ACTION_RAISE && (r->seq > h->seen_seq || r == newest_stop)) {
            continue;
        }
        #endif
        if (best == NULL || r->seq < best->seq) {
            best = r;
        }
    }
    return best;
}

// Invalidate slot r and fill the common fields.
static failstop_record_t *fs_record_begin(failstop_record_t *r, uint8_t kind, uint8_t action, uint32_t up) {
    failstop_header_t *h = &fs_region->hdr;
    uint32_t seq = h->next_seq;
    r->magic = 0; // a torn write leaves this slot invalid
    FS_BARRIER();
    memset((uint8_t *)r + sizeof(r->magic), 0, sizeof(*r) - sizeof(r->magic));
    h->next_seq = seq + 1;
    failstop_header_commit();
    r->version = FAILSTOP_FORMAT_VERSION;
    r->kind = kind;
    r->action = action;
    r->reset_cause = h->boot_cause;
    r->seq = seq;
    r->boot = h->boot_count;
    r->uptime_ms = up;
    fs_mark_copy(r->mark);
    // A constant: its first 16 bytes in one fixed-size copy.
    static const char id[] = MICROPY_FAILSTOP_FIRMWARE_ID;
    memcpy(r->firmware, id, MIN(sizeof(id) - 1, sizeof(r->firmware)));
    #if MICROPY_STACK_CHECK
    // 0 (unknown) when the fault is taken on another stack (signal or exception stack).
    mp_uint_t used = mp_cstack_usage();
    r->stack_used = used <= MP_STATE_THREAD(stack_limit) + 4096 ? used : 0;
    #endif
    #if MICROPY_FAILSTOP_HEAP_FREE
    r->heap_free = fs_heap_free();
    #else
    r->heap_free = 0xffffffff;
    #endif
    return r;
}

// CRC over the final bytes (magic included), then the magic is stored last.
static void fs_record_commit(failstop_record_t *r) {
    static const uint32_t magic = FAILSTOP_SLOT_MAGIC;
    r->magic = 0;
    FS_BARRIER();
    uint32_t crc = fs_crc_update(0xffffffff, &magic, sizeof(magic));
    crc = fs_crc_update(crc, &r->version, offsetof(failstop_record_t, crc) - sizeof(magic));
    r->crc = ~crc;
    FS_BARRIER();
    r->magic = FAILSTOP_SLOT_MAGIC;
}

// Crash-loop breaker: count a fail-stop reboot after `up` ms of uptime. A boot that
// ran longer than the window (or whose uptime saturated) starts a fresh count.
static void fs_count_reboot(uint32_t up) {
    failstop_header_t *h = &fs_region->hdr;
    uint32_t total = h->loop_uptime_ms + up;
    if (h->loop_count == 0 || total > h->loop_window_ms || total < up) {
        h->loop_count = 1;
        h->loop_uptime_ms = up;
    } else {
        if (h->loop_count < 255) {
            h->loop_count++;
        }
        h->loop_uptime_ms = total;
    }
}

// A fault while handling a fault: keep the first record, flag it, reset at once (it
// was counted when the first fault entered).
static MP_NORETURN void fs_double_fault(void) {
    failstop_record_t *r = fs_fault_rec;
    if (r != NULL) {
        r->flags |= FAILSTOP_FLAG_DOUBLE_FAULT;
        fs_record_commit(r);
    }
    failstop_header_t *h = &fs_region->hdr;
    if (h->pending_cause == 0) {
        // The first fault was HALT or RAISE (not counted on entry): this reset is a fault's.
        fs_count_reboot(failstop_hal_uptime_ms());
        h->pending_cause = FAILSTOP_RC_FAULT;
    }
    failstop_header_commit(); // the count may not be committed yet
    fs_write("\r\nfailstop: double fault -> REBOOT\r\n");
    failstop_hal_reset(h->pending_cause);
}

// Claim the fault path for this core/thread. Its own second claim is a double fault;
// another core's fault waits here (interrupts off) for the owner's reset.
static void fs_claim(void) {
    uint32_t me = failstop_hal_context();
    uint32_t prev = failstop_hal_cas(&fs_owner, 0, me);
    if (prev == me) {
        fs_double_fault();
    }
    while (prev != 0) {
        prev = fs_owner;
        if (prev == 0) {
            // The owner went back to the program (a RAISE record): try again.
            prev = failstop_hal_cas(&fs_owner, 0, me);
        }
    }
}

uint8_t failstop_record(const failstop_fault_t *f) {
    uint8_t kind = f->kind;
    if ((kind == FAILSTOP_KIND_OOM || kind == FAILSTOP_KIND_STACK)
        && (failstop_converting
            #if MICROPY_FAILSTOP_RECOVERABLE
            || failstop_recoverable[kind - FAILSTOP_KIND_OOM]
            #endif
            )) {
        return 0; // panic() converting its reason, or a recoverable() block: stock behaviour
    }
    if (fs_region == NULL) {
        failstop_boot(); // a fault before mp_init
    }
    uint8_t action = failstop_policy_get(kind);
    failstop_header_t *h = &fs_region->hdr;
    failstop_record_t *r;
    uint32_t up = failstop_hal_uptime_ms();
    #if MICROPY_FAILSTOP_POLICY
    if (action == FAILSTOP_ACTION_RAISE) {
        fs_claim();
        r = fs_raise_recorded ? NULL : fs_pick_slot(action);
        if (r == NULL) {
            fs_owner = 0;
            return action; // best effort: the evidence of earlier faults stays
        }
        fs_raise_recorded = true;
    } else
    #endif
    {
        failstop_hal_irq_disable();
        fs_claim();
        failstop_hal_wdt_budget(MICROPY_FAILSTOP_WDT_BUDGET_MS);
        failstop_hal_stop_others();
        if (action == FAILSTOP_ACTION_REBOOT) {
            // Counted on entry, once: a double fault from here on resets directly.
            fs_count_reboot(up);
            h->pending_cause = kind == FAILSTOP_KIND_WATCHDOG ? FAILSTOP_RC_WATCHDOG : FAILSTOP_RC_FAULT;
            // Committed with the sequence number in fs_record_begin (one CRC of the header).
        }
        r = fs_pick_slot(action);
    }
    r = fs_record_begin(r, kind, action, up);
    fs_fault_rec = r;
    r->flags |= f->flags;
    #if MICROPY_FAILSTOP_KEEPER
    if (failstop_keeper_active) {
        r->flags |= FAILSTOP_FLAG_IN_KEEPER;
    }
    #endif
    r->alloc_size = f->alloc_size;
    r->pc = f->pc;
    r->lr = f->lr;
    if (f->exc_type != MP_QSTRnull && fs_qstr_head(r->exc_type, sizeof(r->exc_type), f->exc_type)) {
        r->flags |= FAILSTOP_FLAG_NAME_TRUNCATED;
    }
    if (f->msg != NULL && fs_text_head(r->message, sizeof(r->message), f->msg, f->msg_len)) {
        r->flags |= FAILSTOP_FLAG_MSG_TRUNCATED;
    }
    #if MICROPY_FAILSTOP_OOM_TEXT
    if (kind == FAILSTOP_KIND_OOM && f->msg == NULL) {
        fs_oom_text(r);
    }
    #endif
    fs_capture_frames(r, f->exc);
    #if MICROPY_FAILSTOP_INJECT
    if (failstop_inject_addr != 0) {
        // Test hook: a CPU fault in the middle of the fault path (a double fault).
        volatile uint32_t *p = (volatile uint32_t *)failstop_inject_addr;
        failstop_inject_addr = 0;
        *p = 1;
    }
    #endif
    fs_record_commit(r);
    #if MICROPY_FAILSTOP_POLICY
    if (action == FAILSTOP_ACTION_RAISE) {
        fs_fault_rec = NULL;
        FS_BARRIER();
        fs_owner = 0;
    }
    #endif
    // Otherwise the fault path stays claimed: a fault from here on is a double fault.
    return action;
}

// Append a static qstr's bytes (a kind or action name: in ROM, nothing is looked up).
static char *fs_put_qstr(char *p, qstr q) {
    size_t len;
    const byte *s = qstr_data(q, &len);
    memcpy(p, s, len);
    return p + len;
}

// "failstop: <KIND> -> <ACTION>\r\n" in one write (each name at most 9 bytes). Not inlined:
// the line's buffer is off the stack again before the reset's USB drain runs.
static MP_NOINLINE void fs_write_stop_line(uint8_t kind, uint8_t action) {
    char line[10 + 9 + 4 + 9 + 2];
    char *p = line;
    memcpy(p, "failstop: ", 10);
    p = fs_put_qstr(p + 10, failstop_kind_names[kind]);
    memcpy(p, " -> ", 4);
    p = fs_put_qstr(p + 4, failstop_action_names[action]);
    memcpy(p, "\r\n", 2);
    failstop_hal_write(line, p + 2 - line);
}

void failstop_stop(uint8_t kind, uint8_t action) {
    fs_write_stop_line(kind, action);
    #if MICROPY_FAILSTOP_POLICY
    if (action == FAILSTOP_ACTION_HALT) {
        failstop_hal_halt();
    }
    #endif
    failstop_hal_reset(fs_region->hdr.pending_cause);
}

#if MICROPY_FAILSTOP_UNHANDLED
// "Traceback ..." of the fault being handled, from its record: printing the exception
// itself could run Python (a __str__) or go through dupterm streams.
void failstop_print_traceback(void) {
    const failstop_record_t *r = fs_fault_rec;
    if (r == NULL) {
        return;
    }
    fs_write("Traceback (most recent call last):\r\n");
    if (r->flags & FAILSTOP_FLAG_TB_TRUNCATED) {
        fs_write("  ...\r\n");
    }
    for (size_t i = r->nframes; i-- > 0;) {
        const failstop_frame_t *fr = &r->frames[i];
        fs_write("  File \"");
        fs_write_field(fr->file, sizeof(fr->file));
        fs_write("\", line ");
        fs_write_uint(fr->line);
        fs_write(", in ");
        fs_write_field(fr->func, sizeof(fr->func));
        fs_write("\r\n");
    }
    fs_write_field(r->exc_type, sizeof(r->exc_type));
    if (r->message[0]) {
        fs_write(": ");
        fs_write_field(r->message, sizeof(r->message));
    }
    fs_write("\r\n");
}
#endif

void failstop_fault(const failstop_fault_t *f) {
    uint8_t action = failstop_record(f);
    if (action != 0 && action != FAILSTOP_ACTION_RAISE) {
        failstop_stop(f->kind, action);
    }
}

// The watchdog's early warning fired (from the port's handler): the program hung.
void failstop_watchdog_timeout(void) {
    static const char msg[] = "watchdog timeout";
    failstop_fault_t f = { .kind = FAILSTOP_KIND_WATCHDOG, .msg = msg, .msg_len = sizeof(msg) - 1 };
    failstop_fault(&f);
}

// A CPU fault, from a port's fault handler: "<what> 0x<value><suffix>" as the message,
// the stacked PC and LR (without MICROPY_FAILSTOP_CPU_FAULT_TEXT, PC and LR only; the
// port passes NULL texts). HARDFAULT cannot RAISE: this never returns.
MP_NORETURN void failstop_cpu_fault(const char *what, uint32_t value, const char *suffix, uint32_t pc, uint32_t lr) {
    char msg[sizeof(((failstop_record_t *)0)->message)];
    size_t n = 0;
    #if MICROPY_FAILSTOP_CPU_FAULT_TEXT
    for (const char *s = what; *s && n < sizeof(msg) - 10; ++s) {
        msg[n++] = *s;
    }
    msg[n++] = '0';
    msg[n++] = 'x';
    for (int sh = 28; sh >= 0; sh -= 4) {
        msg[n++] = "0123456789abcdef"[(value >> sh) & 0xf];
    }
    for (const char *s = suffix; *s && n < sizeof(msg); ++s) {
        msg[n++] = *s;
    }
    #else
    (void)what;
    (void)value;
    (void)suffix;
    #endif
    failstop_fault_t f = { .kind = FAILSTOP_KIND_HARDFAULT, .msg = msg, .msg_len = n, .pc = pc, .lr = lr };
    failstop_fault(&f);
    for (;;) {
    }
}

// A MicroPython or SDK internal failure from C (a failed assert, an SDK panic): FATAL
// with its text. Never returns.
MP_NORETURN void failstop_fatal(const char *msg, size_t len) {
    failstop_fault_t f = { .kind = FAILSTOP_KIND_FATAL, .msg = msg, .msg_len = len };
    failstop_fault(&f);
    for (;;) {
    }
}

// A failed C assert: "assert <expr> at <file tail>:<line>" (no allocation, no printf).
MP_NORETURN void failstop_fatal_assert(const char *file, int line, const char *expr) {
    char msg[sizeof(((failstop_record_t *)0)->message)];
    size_t n = 0;
    static const char pre[] = "assert ";
    memcpy(msg, pre, sizeof(pre) - 1);
    n = sizeof(pre) - 1;
    size_t len = expr ? strlen(expr) : 0;
    len = len > 28 ? 28 : len;
    memcpy(msg + n, expr, len);
    n += len;
    memcpy(msg + n, " at ", 4);
    n += 4;
    len = file ? strlen(file) : 0;
    size_t room = sizeof(msg) - n - 12;
    if (len > room) {
        file += len - room;
        len = room;
    }
    memcpy(msg + n, file, len);
    n += len;
    msg[n++] = ':';
    char num[11];
    char *p = failstop_utoa(num + sizeof(num), line < 0 ? 0 : (mp_uint_t)line);
    memcpy(msg + n, p, num + sizeof(num) - p);
    n += num + sizeof(num) - p;
    failstop_fatal(msg, n);
}

// Message of an exception without running Python code: its first argument when
// that is a str or a small int.
size_t failstop_exc_message(mp_obj_t exc, char *buf, size_t cap, const char **out) {
    mp_obj_t val = mp_obj_exception_get_value(exc);
    if (mp_obj_is_str(val)) {
        size_t len;
        *out = mp_obj_str_get_data(val, &len);
        return len;
    }
    *out = buf;
    if (mp_obj_is_small_int(val)) {
        mp_int_t v = MP_OBJ_SMALL_INT_VALUE(val);
        char *p = failstop_utoa(buf + cap, v < 0 ? -(mp_uint_t)v : (mp_uint_t)v);
        if (v < 0) {
            *--p = '-';
        }
        *out = p;
        return buf + cap - p;
    }
    return 0;
}

#if MICROPY_FAILSTOP_POLICY
uint8_t failstop_policy_get(uint8_t kind) {
    return fs_policy[kind] ? fs_policy[kind] : FAILSTOP_ACTION_REBOOT;
}

bool failstop_policy_allowed(uint8_t kind, uint8_t action) {
    // Only faults that stock MicroPython raises can be raised; PANIC never.
    return action != FAILSTOP_ACTION_RAISE
           || kind == FAILSTOP_KIND_OOM || kind == FAILSTOP_KIND_STACK || kind == FAILSTOP_KIND_UNHANDLED;
}

void failstop_policy_set(uint8_t kind, uint8_t action) {
    fs_policy[kind] = action;
}
#endif

// The mark block only (any context, hard IRQs included: nothing allocated, the header
// untouched). Torn by a reset, it reads as no mark.
void failstop_mark_set(const char *tag, size_t len) {
    failstop_header_t *h = &fs_region->hdr;
    fs_mark_writing++;
    FS_BARRIER();
    memset(h->mark, 0, sizeof(h->mark));
    #if MICROPY_FAILSTOP_INJECT
    if (failstop_inject_mark) {
        // Test hook: the watchdog's early warning lands half way through the copy.
        failstop_inject_mark = false;
        memcpy(h->mark, tag, len / 2);
        failstop_watchdog_timeout();
    }
    #endif
    memcpy(h->mark, tag, len);
    h->mark_crc = failstop_crc32(h->mark, sizeof(h->mark));
    fs_mark_ok = true;
    FS_BARRIER();
    fs_mark_writing--;
}

#if MICROPY_FAILSTOP_REGION_API
void failstop_clear(void) {
    failstop_header_t *h = &fs_region->hdr;
    for (size_t i = 0; i < MICROPY_FAILSTOP_NSLOTS; ++i) {
        memset(&fs_region->slot[i], 0, sizeof(failstop_record_t));
    }
    h->seen_seq = h->next_seq - 1;
    h->loop_count = 0;
    h->loop_uptime_ms = 0;
    h->state &= ~FAILSTOP_STATE_SAFE_MODE;
    failstop_header_commit();
}
#endif

// A reset the program asked for (machine.reset() on boards whose port glue routes it
// here): not a fault, so the crash-loop count is left alone.
void failstop_soft_reset(void) {
    if (fs_region == NULL) {
        failstop_boot();
    }
    failstop_hal_irq_disable();
    fs_claim();
    fs_region->hdr.pending_cause = FAILSTOP_RC_SOFT;
    failstop_header_commit();
    failstop_hal_reset(FAILSTOP_RC_SOFT);
}

// The program ran to its end without a fail-stop fault: the crash loop is over.
void failstop_healthy(void) {
    if (fs_region != NULL && fs_region->hdr.loop_count != 0) {
        fs_region->hdr.loop_count = 0;
        fs_region->hdr.loop_uptime_ms = 0;
        failstop_header_commit();
    }
}

bool failstop_main_begin(void) {
    if (fs_region->hdr.state & FAILSTOP_STATE_SAFE_MODE) {
        return false;
    }
    failstop_main_active = true;
    return true;
}

void failstop_main_end(void) {
    failstop_healthy();
    failstop_main_active = false;
}

#if MICROPY_FAILSTOP_BANNER
static const failstop_record_t *fs_newest(void) {
    const failstop_record_t *best = NULL;
    for (size_t i = 0; i < MICROPY_FAILSTOP_NSLOTS; ++i) {
        const failstop_record_t *r = &fs_region->slot[i];
        if (failstop_slot_valid(r) && (best == NULL || r->seq > best->seq)) {
            best = r;
        }
    }
    return best;
}

void failstop_print_banner(void) {
    const failstop_header_t *h = &fs_region->hdr;
    const failstop_record_t *r = fs_newest();
    if ((h->boot_cause == FAILSTOP_RC_FAULT || h->boot_cause == FAILSTOP_RC_WATCHDOG)
        && r != NULL && r->boot + 1 == h->boot_count && r->kind <= FAILSTOP_KIND_MAX) {
        fs_write("failstop: reboot after ");
        fs_write_qstr(failstop_kind_names[r->kind]);
        fs_write(" (seq ");
        fs_write_uint(r->seq);
        fs_write(", boot ");
        fs_write_uint(r->boot);
        fs_write(")");
        if (r->nframes) {
            fs_write(" at ");
            fs_write_field(r->frames[0].file, sizeof(r->frames[0].file));
            fs_write(":");
            fs_write_uint(r->frames[0].line);
            fs_write(" in ");
            fs_write_field(r->frames[0].func, sizeof(r->frames[0].func));
        }
        if (r->message[0]) {
            fs_write(": ");
            fs_write_field(r->message, sizeof(r->message));
        }
        fs_write("\r\n");
    }
    if (h->state & FAILSTOP_STATE_SAFE_MODE) {
        fs_write("failstop: safe mode (");
        fs_write_uint(h->loop_count);
        fs_write(" fail-stop reboots within the crash-loop window); main program not run\r\n");
    }
}
#endif

static void fs_posthoc_watchdog(void) {
    static const char msg[] = "watchdog reset, no early warning";
    failstop_header_t *h = &fs_region->hdr;
    failstop_record_t *r = fs_record_begin(fs_pick_slot(FAILSTOP_ACTION_REBOOT), FAILSTOP_KIND_WATCHDOG, FAILSTOP_ACTION_REBOOT, 0);
    r->boot = h->boot_count - 1; // the boot that hung (its cause is still in boot_cause)
    r->heap_free = 0xffffffff;
    r->stack_used = 0;
    r->flags = FAILSTOP_FLAG_POSTHOC | FAILSTOP_FLAG_NO_PYTHON_FRAME;
    memcpy(r->message, msg, sizeof(msg) - 1);
    fs_record_commit(r);
    fs_count_reboot(0);
}

// Once per boot (real reset), before any Python code.
void failstop_boot(void) {
    size_t len;
    fs_region = (failstop_region_t *)failstop_hal_retained(&len);
    failstop_header_t *h = &fs_region->hdr;
    bool hdr_ok = len >= sizeof(failstop_region_t) && h->magic == FAILSTOP_HDR_MAGIC
        && h->version == FAILSTOP_HDR_VERSION && h->nslots == MICROPY_FAILSTOP_NSLOTS
        && h->slot_size == sizeof(failstop_record_t)
        && h->crc == failstop_crc32(h, offsetof(failstop_header_t, crc));
    fs_mark_ok = fs_mark_valid(h);
    uint32_t max_seq = 0, max_boot = 0;
    for (size_t i = 0; i < MICROPY_FAILSTOP_NSLOTS; ++i) {
        const failstop_record_t *r = &fs_region->slot[i];
        if (failstop_slot_valid(r)) {
            max_seq = MAX(max_seq, r->seq);
            max_boot = MAX(max_boot, r->boot);
        }
    }
    if (!hdr_ok) {
        // Rebuild the header only; valid slots and the mark block stay as they are.
        // Nothing is known to be seen: a keeper gets the newest record (at least once).
        memset(h, 0, offsetof(failstop_header_t, mark));
        h->magic = FAILSTOP_HDR_MAGIC;
        h->version = FAILSTOP_HDR_VERSION;
        h->nslots = MICROPY_FAILSTOP_NSLOTS;
        h->slot_size = sizeof(failstop_record_t);
        h->boot_count = max_boot;
        h->loop_limit = MICROPY_FAILSTOP_LOOP_LIMIT;
        h->loop_window_ms = MICROPY_FAILSTOP_LOOP_WINDOW_MS;
    }
    if (h->next_seq <= max_seq) {
        h->next_seq = max_seq + 1;
    }
    h->boot_count++;
    // Fuse the hardware cause with the one the firmware left before resetting.
    uint8_t hw = failstop_hal_reset_cause();
    uint8_t cause;
    if (hw == FAILSTOP_RC_POWER_ON || hw == FAILSTOP_RC_BROWNOUT || hw == FAILSTOP_RC_PIN) {
        cause = hw;
    } else if (h->pending_cause != 0 && h->pending_cause <= FAILSTOP_RC_MAX) {
        cause = h->pending_cause;
    } else if (hw != FAILSTOP_RC_UNKNOWN) {
        cause = hw;
    } else {
        cause = hdr_ok ? FAILSTOP_RC_SOFT : FAILSTOP_RC_POWER_ON;
    }
    if (cause == FAILSTOP_RC_POWER_ON || cause == FAILSTOP_RC_PIN) {
        // A person (or a power cut) restarted the board: a fresh crash-loop window.
        h->loop_count = 0;
        h->loop_uptime_ms = 0;
    } else if (cause == FAILSTOP_RC_WATCHDOG && h->pending_cause == 0 && hdr_ok) {
        // The hardware watchdog bit with no early warning: record it now, from what
        // survived (the mark), as the boot that hung, and count it.
        fs_posthoc_watchdog();
    }
    h->boot_cause = cause;
    h->pending_cause = 0;
    if (h->loop_count > h->loop_limit) {
        h->state |= FAILSTOP_STATE_SAFE_MODE;
    } else {
        h->state &= ~FAILSTOP_STATE_SAFE_MODE;
    }
    failstop_header_commit();
    #if MICROPY_FAILSTOP_BANNER
    failstop_print_banner();
    #endif
}
