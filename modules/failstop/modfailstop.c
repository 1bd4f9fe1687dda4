// failstop: the Python API (module `failstop`, plus `machine.panic`).
#include <string.h>
#include "py/runtime.h"
#include "py/objstr.h"
#include "failstop.h"

static const qstr_short_t fs_cause_qstrs[] = {
    MP_QSTR_unknown, MP_QSTR_power_on, MP_QSTR_fault, MP_QSTR_watchdog, MP_QSTR_soft, MP_QSTR_pin, MP_QSTR_brownout,
};

static inline failstop_header_t *fs_hdr(void) {
    return &failstop_region()->hdr;
}

static mp_obj_t fs_qstr_or_unknown(const qstr_short_t *table, size_t n, uint8_t code) {
    return MP_OBJ_NEW_QSTR(code < n && table[code] != MP_QSTRnull ? table[code] : MP_QSTR_unknown);
}

// The argument checks, shared: "<what> must be <want>, not <type>" and a range check.
static MP_NORETURN void fs_type_error(const char *what, const char *want, mp_obj_t got) {
    mp_raise_msg_varg(&mp_type_TypeError, MP_ERROR_TEXT("%s must be %s, not %s"), what, want, mp_obj_get_type_str(got));
}

static mp_int_t fs_int_arg(mp_obj_t o, const char *what, mp_int_t lo, mp_int_t hi) {
    if (!mp_obj_is_int(o)) {
        fs_type_error(what, "an int", o);
    }
    mp_int_t v = mp_obj_get_int(o);
    if (v < lo || v > hi) {
        mp_raise_msg_varg(&mp_type_ValueError, MP_ERROR_TEXT("%s must be %d..%d"), what, (int)lo, (int)hi);
    }
    return v;
}

#if MICROPY_FAILSTOP_POLICY || MICROPY_FAILSTOP_RECOVERABLE || MICROPY_FAILSTOP_INJECT
static uint8_t fs_lookup(mp_obj_t name, const qstr_short_t *table, size_t n, const char *what) {
    if (!mp_obj_is_str(name)) {
        fs_type_error(what, "a str", name);
    }
    size_t len;
    const char *s = mp_obj_str_get_data(name, &len);
    for (size_t i = 1; i < n; ++i) {
        size_t qlen;
        const byte *q = qstr_data(table[i], &qlen);
        if (qlen == len && memcmp(q, s, len) == 0) {
            return i;
        }
    }
    mp_raise_msg_varg(&mp_type_ValueError, MP_ERROR_TEXT("unknown %s '%s'"), what, s);
}
#endif

/******************************************************************************/
// Record objects: a copy of one valid slot, decoded on attribute access.

typedef struct _mod_failstop_rec_obj_t {
    mp_obj_base_t base;
    failstop_record_t rec;
} mod_failstop_rec_obj_t;

// A fixed-size text field's length (strnlen is not in every port's libc).
static size_t fs_field_len(const char *s, size_t cap) {
    size_t n = 0;
    while (n < cap && s[n] != '\0') {
        ++n;
    }
    return n;
}

static mp_obj_t fs_str_field(const char *s, size_t cap) {
    return mp_obj_new_str(s, fs_field_len(s, cap));
}

static mp_obj_t fs_frame_tuple(const failstop_frame_t *fr) {
    mp_obj_t items[3] = {
        fs_str_field(fr->file, sizeof(fr->file)),
        mp_obj_new_int_from_uint(fr->line),
        fs_str_field(fr->func, sizeof(fr->func)),
    };
    return mp_obj_new_tuple(3, items);
}

// Record attributes, table-driven: one row per plain field (offset into the record, how
// to decode it); location and traceback are built from the frames.
enum { FS_F_U32, FS_F_U8, FS_F_STR, FS_F_KIND, FS_F_ACTION, FS_F_CAUSE, FS_F_HEAP };
typedef struct _fs_field_t {
    uint16_t name; // qstr
    uint8_t offset;
    uint8_t type : 4;
    uint8_t len : 4; // FS_F_STR: size / 8
} fs_field_t;
#define FS_FIELD(q, member, t) { MP_QSTR_##q, offsetof(failstop_record_t, member), t, sizeof(((failstop_record_t *)0)->member) / 8 }
static const fs_field_t fs_fields[] = {
    FS_FIELD(kind, kind, FS_F_KIND),
    FS_FIELD(action, action, FS_F_ACTION),
    FS_FIELD(reset_cause, reset_cause, FS_F_CAUSE),
    FS_FIELD(seq, seq, FS_F_U32),
    FS_FIELD(boot, boot, FS_F_U32),
    FS_FIELD(uptime_ms, uptime_ms, FS_F_U32),
    FS_FIELD(flags, flags, FS_F_U32),
    FS_FIELD(heap_free, heap_free, FS_F_HEAP),
    FS_FIELD(alloc_size, alloc_size, FS_F_U32),
    FS_FIELD(stack_used, stack_used, FS_F_U32),
    FS_FIELD(pc, pc, FS_F_U32),
    FS_FIELD(lr, lr, FS_F_U32),
    FS_FIELD(depth, depth, FS_F_U8),
    FS_FIELD(mark, mark, FS_F_STR),
    FS_FIELD(firmware, firmware, FS_F_STR),
    FS_FIELD(exc_type, exc_type, FS_F_STR),
    FS_FIELD(message, message, FS_F_STR),
};
_Static_assert(sizeof(((failstop_record_t *)0)->message) / 8 < 16, "failstop: text field size fits the table");

static void mod_failstop_rec_attr(mp_obj_t self_in, qstr attr, mp_obj_t *dest) {
    if (dest[0] != MP_OBJ_NULL) {
        return; // read-only
    }
    const failstop_record_t *r = &((mod_failstop_rec_obj_t *)MP_OBJ_TO_PTR(self_in))->rec;
    const uint8_t *b = (const uint8_t *)r;
    for (size_t i = 0; i < MP_ARRAY_SIZE(fs_fields); ++i) {
        const fs_field_t *f = &fs_fields[i];
        if (f->name != attr) {
            continue;
        }
        uint32_t v = b[f->offset];
        if (f->type == FS_F_U32 || f->type == FS_F_HEAP) {
            memcpy(&v, b + f->offset, sizeof(v));
        }
        switch (f->type) {
            case FS_F_STR: dest[0] = fs_str_field((const char *)b + f->offset, f->len * 8); break;
            case FS_F_KIND: dest[0] = fs_qstr_or_unknown(failstop_kind_names, MP_ARRAY_SIZE(failstop_kind_names), v); break;
            case FS_F_ACTION: dest[0] = fs_qstr_or_unknown(failstop_action_names, MP_ARRAY_SIZE(failstop_action_names), v); break;
            case FS_F_CAUSE: dest[0] = fs_qstr_or_unknown(fs_cause_qstrs, MP_ARRAY_SIZE(fs_cause_qstrs), v); break;
            case FS_F_HEAP:
                if (v == 0xffffffff) {
                    dest[0] = mp_const_none;
                    break;
                }
                MP_FALLTHROUGH
            default: dest[0] = mp_obj_new_int_from_uint(v); break;
        }
        return;
    }
    if (attr == MP_QSTR_location) {
        dest[0] = r->nframes ? fs_frame_tuple(&r->frames[0]) : mp_const_none;
    } else if (attr == MP_QSTR_traceback) {
        size_t n = MIN(r->nframes, FAILSTOP_NFRAMES);
        mp_obj_t items[FAILSTOP_NFRAMES];
        for (size_t i = 0; i < n; ++i) {
            items[i] = fs_frame_tuple(&r->frames[i]);
        }
        dest[0] = mp_obj_new_list(n, items);
    } else if (attr == MP_QSTR_raw) {
        dest[0] = mp_obj_new_bytes((const byte *)r, sizeof(*r));
    }
}

#if MICROPY_FAILSTOP_REGION_API
static void mod_failstop_rec_print(const mp_print_t *print, mp_obj_t self_in, mp_print_kind_t kind) {
    (void)kind;
    const failstop_record_t *r = &((mod_failstop_rec_obj_t *)MP_OBJ_TO_PTR(self_in))->rec;
    mp_printf(print, "<failstop record #%u %q boot %u", (uint)r->seq,
        MP_OBJ_QSTR_VALUE(fs_qstr_or_unknown(failstop_kind_names, MP_ARRAY_SIZE(failstop_kind_names), r->kind)), (uint)r->boot);
    if (r->nframes) {
        const failstop_frame_t *fr = &r->frames[0];
        mp_printf(print, " at %.*s:%u in %.*s", (int)fs_field_len(fr->file, sizeof(fr->file)), fr->file,
            (uint)fr->line, (int)fs_field_len(fr->func, sizeof(fr->func)), fr->func);
    }
    if (r->exc_type[0]) {
        mp_printf(print, " %.*s", (int)fs_field_len(r->exc_type, sizeof(r->exc_type)), r->exc_type);
    }
    if (r->message[0]) {
        mp_printf(print, ": %.*s", (int)fs_field_len(r->message, sizeof(r->message)), r->message);
    }
    mp_print_str(print, ">");
}
#endif

static MP_DEFINE_CONST_OBJ_TYPE(
    mod_failstop_rec_type,
    MP_QSTR_Record,
    MP_TYPE_FLAG_NONE,
    #if MICROPY_FAILSTOP_REGION_API
    print, mod_failstop_rec_print,
    #endif
    attr, mod_failstop_rec_attr
    );

static mp_obj_t fs_new_record(const failstop_record_t *r) {
    mod_failstop_rec_obj_t *o = mp_obj_malloc(mod_failstop_rec_obj_t, &mod_failstop_rec_type);
    memcpy(&o->rec, r, sizeof(*r));
    return MP_OBJ_FROM_PTR(o);
}

#if MICROPY_FAILSTOP_REGION_API
// Valid records, oldest first (insertion sort of at most NSLOTS entries).
static size_t fs_sorted(const failstop_record_t **out) {
    failstop_region_t *reg = failstop_region();
    size_t n = 0;
    for (size_t i = 0; i < MICROPY_FAILSTOP_NSLOTS; ++i) {
        const failstop_record_t *r = &reg->slot[i];
        if (!failstop_slot_valid(r)) {
            continue;
        }
        size_t j = n++;
        while (j > 0 && out[j - 1]->seq > r->seq) {
            out[j] = out[j - 1];
            --j;
        }
        out[j] = r;
    }
    return n;
}

#endif

// Newest record written in an earlier boot, or NULL.
static const failstop_record_t *fs_last(void) {
    const failstop_region_t *reg = failstop_region();
    const failstop_record_t *best = NULL;
    for (size_t i = 0; i < MICROPY_FAILSTOP_NSLOTS; ++i) {
        const failstop_record_t *r = &reg->slot[i];
        if (failstop_slot_valid(r) && r->boot < reg->hdr.boot_count && (best == NULL || r->seq > best->seq)) {
            best = r;
        }
    }
    return best;
}

/******************************************************************************/
// panic(): accepts anything and never raises.

typedef struct _fs_buf_t {
    char *buf;
    size_t len;
    size_t cap;
    bool cut;
} fs_buf_t;

static void fs_buf_strn(void *data, const char *str, size_t len) {
    fs_buf_t *b = data;
    size_t room = b->cap - b->len;
    if (len > room) {
        len = room;
        b->cut = true;
    }
    memcpy(b->buf + b->len, str, len);
    b->len += len;
}

static mp_obj_t mod_failstop_panic(size_t n_args, const mp_obj_t *args, mp_map_t *kw_args) {
    mp_obj_t reason = mp_const_none;
    if (n_args > 0) {
        reason = args[0];
    } else {
        mp_map_elem_t *e = mp_map_lookup(kw_args, MP_OBJ_NEW_QSTR(MP_QSTR_reason), MP_MAP_LOOKUP);
        if (e != NULL) {
            reason = e->value;
        }
    }
    char text[sizeof(((failstop_record_t *)0)->message) + 1];
    failstop_fault_t f = { .kind = FAILSTOP_KIND_PANIC };
    mp_obj_t printable = reason;
    if (mp_obj_is_exception_instance(reason)) {
        f.exc_type = mp_obj_get_type(reason)->name;
        f.msg_len = failstop_exc_message(reason, text, sizeof(text), &f.msg);
        printable = MP_OBJ_NULL;
    } else if (reason == mp_const_none) {
        printable = MP_OBJ_NULL;
    } else if (mp_obj_is_str(reason)) {
        f.msg = mp_obj_str_get_data(reason, &f.msg_len);
        printable = MP_OBJ_NULL;
    }
    if (printable != MP_OBJ_NULL) {
        // Any other object: its str(), cut to the record; if that fails, its type name.
        fs_buf_t b = { text, 0, sizeof(text), false };
        mp_print_t print = { &b, fs_buf_strn };
        nlr_buf_t nlr;
        failstop_converting = 1;
        if (nlr_push(&nlr) == 0) {
            mp_obj_print_helper(&print, printable, PRINT_STR);
            nlr_pop();
            f.msg = text;
            f.msg_len = b.len;
            if (b.cut) {
                f.flags |= FAILSTOP_FLAG_MSG_TRUNCATED;
            }
        } else {
            f.msg = mp_obj_get_type_str(printable);
            f.msg_len = strlen(f.msg);
            f.flags |= FAILSTOP_FLAG_REASON_UNPRINTABLE;
        }
        failstop_converting = 0;
    }
    failstop_fault(&f); // PANIC cannot be RAISE: does not return
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_KW(mod_failstop_panic_obj, 0, mod_failstop_panic);

#if MICROPY_FAILSTOP_POLICY
/******************************************************************************/
// policy(kind, action=None)

static mp_obj_t mod_failstop_policy(size_t n_args, const mp_obj_t *args) {
    uint8_t kind = fs_lookup(args[0], failstop_kind_names, MP_ARRAY_SIZE(failstop_kind_names), "fault kind");
    if (n_args > 1 && args[1] != mp_const_none) {
        uint8_t action = fs_lookup(args[1], failstop_action_names, MP_ARRAY_SIZE(failstop_action_names), "action");
        if (!failstop_policy_allowed(kind, action)) {
            mp_raise_msg_varg(&mp_type_ValueError, MP_ERROR_TEXT("%q cannot be RAISE: it is always fail-stop"), failstop_kind_names[kind]);
        }
        failstop_policy_set(kind, action);
    }
    return MP_OBJ_NEW_QSTR(failstop_action_names[failstop_policy_get(kind)]);
}
static MP_DEFINE_CONST_FUN_OBJ_VAR_BETWEEN(mod_failstop_policy_obj, 1, 2, mod_failstop_policy);
#endif

#if MICROPY_FAILSTOP_FRAGILE
/******************************************************************************/
// with failstop.fragile(): an exception escaping the block is a PANIC.
//
// Every `with` looks up __enter__ and __exit__ and calls them: here without a locals-dict
// search and without argument-count checks. fragile, __enter__ and __exit__ are constant
// objects of one callable type (its call slot does the work), and the context manager's
// attr slot hands out the two methods.

static const mp_obj_base_t mod_failstop_fragile_fn[3];
enum { FS_FRAGILE_NEW, FS_FRAGILE_ENTER, FS_FRAGILE_EXIT };
static const mp_obj_base_t mod_failstop_fragile_singleton;

static mp_obj_t mod_failstop_fragile_exit(const mp_obj_t *args) {
    mp_obj_t exc = args[2];
    if (args[1] == mp_const_none || !mp_obj_is_exception_instance(exc)
        // A person stopping the program (the host's Ctrl-C) and a generator being
        // closed are not faults of the commit: they pass unchanged.
        || mp_obj_is_subclass_fast(args[1], MP_OBJ_FROM_PTR(&mp_type_KeyboardInterrupt))
        || mp_obj_is_subclass_fast(args[1], MP_OBJ_FROM_PTR(&mp_type_GeneratorExit))) {
        return mp_const_false;
    }
    char num[24];
    failstop_fault_t f = { .kind = FAILSTOP_KIND_PANIC, .exc = exc };
    f.exc_type = mp_obj_get_type(exc)->name;
    f.msg_len = failstop_exc_message(exc, num, sizeof(num), &f.msg);
    failstop_fault(&f); // does not return
    return mp_const_false;
}

static mp_obj_t mod_failstop_fragile_call(mp_obj_t fn, size_t n_args, size_t n_kw, const mp_obj_t *args) {
    size_t which = (const mp_obj_base_t *)MP_OBJ_TO_PTR(fn) - mod_failstop_fragile_fn;
    // fragile(), __enter__(self), __exit__(self, type, value, traceback)
    size_t want = which == FS_FRAGILE_NEW ? 0 : which == FS_FRAGILE_ENTER ? 1 : 4;
    if (n_args != want || n_kw != 0) {
        mp_arg_check_num(n_args, n_kw, want, want, false); // raises the TypeError
    }
    if (which == FS_FRAGILE_EXIT) {
        return mod_failstop_fragile_exit(args);
    }
    return MP_OBJ_FROM_PTR(&mod_failstop_fragile_singleton);
}

static MP_DEFINE_CONST_OBJ_TYPE(
    mod_failstop_fragile_fn_type,
    MP_QSTR_function,
    MP_TYPE_FLAG_NONE,
    call, mod_failstop_fragile_call
    );

static const mp_obj_base_t mod_failstop_fragile_fn[3] = {
    { &mod_failstop_fragile_fn_type }, { &mod_failstop_fragile_fn_type }, { &mod_failstop_fragile_fn_type },
};

static void mod_failstop_fragile_attr(mp_obj_t self_in, qstr attr, mp_obj_t *dest) {
    if (dest[0] == MP_OBJ_NULL && (attr == MP_QSTR___enter__ || attr == MP_QSTR___exit__)) {
        dest[0] = MP_OBJ_FROM_PTR(&mod_failstop_fragile_fn[attr == MP_QSTR___enter__ ? FS_FRAGILE_ENTER : FS_FRAGILE_EXIT]);
        dest[1] = self_in;
    }
}

static MP_DEFINE_CONST_OBJ_TYPE(
    mod_failstop_fragile_type,
    MP_QSTR_fragile,
    MP_TYPE_FLAG_NONE,
    attr, mod_failstop_fragile_attr
    );

static const mp_obj_base_t mod_failstop_fragile_singleton = { &mod_failstop_fragile_type };
#endif

#if MICROPY_FAILSTOP_RECOVERABLE
/******************************************************************************/
// with failstop.recoverable(kind): inside, OOM (or STACK) behaves as stock MicroPython
// and writes no record. One constant object per kind; the depth counts nesting.

typedef struct _fs_recoverable_obj_t {
    mp_obj_base_t base;
    uint8_t kind;
} fs_recoverable_obj_t;

static mp_obj_t mod_failstop_recoverable_enter(mp_obj_t self_in) {
    uint8_t *d = &failstop_recoverable[((fs_recoverable_obj_t *)MP_OBJ_TO_PTR(self_in))->kind - FAILSTOP_KIND_OOM];
    if (*d == 255) {
        mp_raise_ValueError(MP_ERROR_TEXT("recoverable() nested too deep"));
    }
    ++*d;
    return self_in;
}
static MP_DEFINE_CONST_FUN_OBJ_1(mod_failstop_recoverable_enter_obj, mod_failstop_recoverable_enter);

static mp_obj_t mod_failstop_recoverable_exit(size_t n_args, const mp_obj_t *args) {
    (void)n_args;
    uint8_t *d = &failstop_recoverable[((fs_recoverable_obj_t *)MP_OBJ_TO_PTR(args[0]))->kind - FAILSTOP_KIND_OOM];
    if (*d > 0) {
        --*d;
    }
    return mp_const_false;
}
static MP_DEFINE_CONST_FUN_OBJ_VAR_BETWEEN(mod_failstop_recoverable_exit_obj, 4, 4, mod_failstop_recoverable_exit);

static const mp_rom_map_elem_t mod_failstop_recoverable_locals_table[] = {
    { MP_ROM_QSTR(MP_QSTR___enter__), MP_ROM_PTR(&mod_failstop_recoverable_enter_obj) },
    { MP_ROM_QSTR(MP_QSTR___exit__), MP_ROM_PTR(&mod_failstop_recoverable_exit_obj) },
};
static MP_DEFINE_CONST_DICT(mod_failstop_recoverable_locals, mod_failstop_recoverable_locals_table);

static MP_DEFINE_CONST_OBJ_TYPE(
    mod_failstop_recoverable_type,
    MP_QSTR_recoverable,
    MP_TYPE_FLAG_NONE,
    locals_dict, &mod_failstop_recoverable_locals
    );

static const fs_recoverable_obj_t fs_recoverable_objs[] = {
    { { &mod_failstop_recoverable_type }, FAILSTOP_KIND_OOM },
    { { &mod_failstop_recoverable_type }, FAILSTOP_KIND_STACK },
};

static mp_obj_t mod_failstop_recoverable(mp_obj_t kind_in) {
    uint8_t kind = fs_lookup(kind_in, failstop_kind_names, MP_ARRAY_SIZE(failstop_kind_names), "fault kind");
    for (size_t i = 0; i < MP_ARRAY_SIZE(fs_recoverable_objs); ++i) {
        if (fs_recoverable_objs[i].kind == kind) {
            return MP_OBJ_FROM_PTR(&fs_recoverable_objs[i]);
        }
    }
    mp_raise_msg_varg(&mp_type_ValueError, MP_ERROR_TEXT("%q cannot be recoverable: only OOM and STACK"), failstop_kind_names[kind]);
}
static MP_DEFINE_CONST_FUN_OBJ_1(mod_failstop_recoverable_obj, mod_failstop_recoverable);
#endif

/******************************************************************************/
// Records.

static mp_obj_t mod_failstop_last(void) {
    const failstop_record_t *r = fs_last();
    return r ? fs_new_record(r) : mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_0(mod_failstop_last_obj, mod_failstop_last);

#if MICROPY_FAILSTOP_REGION_API
static mp_obj_t mod_failstop_records(void) {
    const failstop_record_t *recs[MICROPY_FAILSTOP_NSLOTS];
    size_t n = fs_sorted(recs);
    mp_obj_t list = mp_obj_new_list(0, NULL);
    for (size_t i = 0; i < n; ++i) {
        mp_obj_list_append(list, fs_new_record(recs[i]));
    }
    return list;
}
static MP_DEFINE_CONST_FUN_OBJ_0(mod_failstop_records_obj, mod_failstop_records);

static mp_obj_t mod_failstop_clear(void) {
    failstop_clear();
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_0(mod_failstop_clear_obj, mod_failstop_clear);

static mp_obj_t mod_failstop_dump(void) {
    return mp_obj_new_bytes((const byte *)failstop_region(), sizeof(failstop_region_t));
}
static MP_DEFINE_CONST_FUN_OBJ_0(mod_failstop_dump_obj, mod_failstop_dump);
#endif

#if MICROPY_FAILSTOP_KEEPER
// keeper(fn): on the first boot after a fault, fn(record) — once per record.
static mp_obj_t mod_failstop_keeper(mp_obj_t fn) {
    if (!mp_obj_is_callable(fn)) {
        fs_type_error("keeper", "callable", fn);
    }
    const failstop_record_t *r = fs_last();
    failstop_header_t *h = fs_hdr();
    // Safe mode skips the keeper too; a record the keeper itself caused is not given to it.
    if (r == NULL || r->seq <= h->seen_seq || (h->state & FAILSTOP_STATE_SAFE_MODE)
        || (r->flags & FAILSTOP_FLAG_IN_KEEPER)) {
        return mp_const_none;
    }
    // Seen before the call: a keeper that crashes is not run again on the next boot.
    h->seen_seq = r->seq;
    failstop_header_commit();
    mp_obj_t rec = fs_new_record(r);
    nlr_buf_t nlr;
    failstop_keeper_active = true;
    if (nlr_push(&nlr) == 0) {
        mp_call_function_1(fn, rec);
        nlr_pop();
        failstop_keeper_active = false;
    } else {
        failstop_keeper_active = false;
        nlr_jump(nlr.ret_val);
    }
    return rec;
}
static MP_DEFINE_CONST_FUN_OBJ_1(mod_failstop_keeper_obj, mod_failstop_keeper);
#endif

/******************************************************************************/
// Watchdog, breadcrumbs, boot state.

static mp_obj_t mod_failstop_watchdog(mp_obj_t timeout_in) {
    uint32_t max = failstop_hal_wdt_max_ms();
    failstop_hal_wdt_arm(fs_int_arg(timeout_in, "timeout_ms", 1, max > 0x7fffffff ? 0x7fffffff : max));
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_1(mod_failstop_watchdog_obj, mod_failstop_watchdog);

static mp_obj_t mod_failstop_feed(void) {
    failstop_hal_wdt_feed();
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_0(mod_failstop_feed_obj, mod_failstop_feed);

// mark() -> the current tag; mark(tag) sets it and allocates nothing (safe in a hard IRQ).
static mp_obj_t mod_failstop_mark(size_t n_args, const mp_obj_t *args) {
    _Static_assert(sizeof(((failstop_header_t *)0)->mark) == 16, "failstop: the mark's size is in its error text");
    if (n_args == 0) {
        char tag[16];
        failstop_mark_get(tag);
        return fs_str_field(tag, sizeof(tag));
    }
    if (args[0] == mp_const_none) {
        failstop_mark_set("", 0);
    } else if (mp_obj_is_str(args[0])) {
        size_t len;
        const char *s = mp_obj_str_get_data(args[0], &len);
        if (len > 16) {
            mp_raise_ValueError(MP_ERROR_TEXT("mark tag longer than 16 bytes"));
        }
        failstop_mark_set(s, len);
    } else {
        fs_type_error("mark tag", "a str or None", args[0]);
    }
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_VAR_BETWEEN(mod_failstop_mark_obj, 0, 1, mod_failstop_mark);

#if MICROPY_FAILSTOP_REGION_API
static mp_obj_t mod_failstop_reset_cause(void) {
    return fs_qstr_or_unknown(fs_cause_qstrs, MP_ARRAY_SIZE(fs_cause_qstrs), fs_hdr()->boot_cause);
}
static MP_DEFINE_CONST_FUN_OBJ_0(mod_failstop_reset_cause_obj, mod_failstop_reset_cause);

static mp_obj_t mod_failstop_boot_count(void) {
    return mp_obj_new_int_from_uint(fs_hdr()->boot_count);
}
static MP_DEFINE_CONST_FUN_OBJ_0(mod_failstop_boot_count_obj, mod_failstop_boot_count);

static mp_obj_t mod_failstop_safe_mode(void) {
    return mp_obj_new_bool(fs_hdr()->state & FAILSTOP_STATE_SAFE_MODE);
}
static MP_DEFINE_CONST_FUN_OBJ_0(mod_failstop_safe_mode_obj, mod_failstop_safe_mode);

// crash_loop(limit=None, window_ms=None): more than `limit` fail-stop reboots within
// `window_ms` of uptime puts the next boot in safe mode. Kept in retained RAM.
static mp_obj_t mod_failstop_crash_loop(size_t n_args, const mp_obj_t *args) {
    failstop_header_t *h = fs_hdr();
    if (n_args > 0 && args[0] != mp_const_none) {
        h->loop_limit = fs_int_arg(args[0], "limit", 1, 254);
    }
    if (n_args > 1 && args[1] != mp_const_none) {
        h->loop_window_ms = fs_int_arg(args[1], "window_ms", 1, 0x7fffffff);
    }
    failstop_header_commit();
    mp_obj_t items[2] = { MP_OBJ_NEW_SMALL_INT(h->loop_limit), mp_obj_new_int_from_uint(h->loop_window_ms) };
    return mp_obj_new_tuple(2, items);
}
static MP_DEFINE_CONST_FUN_OBJ_VAR_BETWEEN(mod_failstop_crash_loop_obj, 0, 2, mod_failstop_crash_loop);
#endif

#if MICROPY_FAILSTOP_INJECT
// _inject('FATAL'): raise with no NLR handler at all, through the real nlr_jump,
// to exercise the FATAL path (unreachable from correct Python code).
// _inject('DOUBLE', addr): the next fail-stop fault path stores to addr before its
// record is committed (a CPU fault inside the fault path: a double fault).
// _inject('MARK'): the next mark(tag) is interrupted by the watchdog's early warning half
// way through its copy (an interrupt at the worst moment, made deterministic).
static mp_obj_t mod_failstop_inject(size_t n_args, const mp_obj_t *args) {
    mp_obj_t kind_in = args[0];
    if (n_args == 2 && mp_obj_is_str(kind_in) && strcmp(mp_obj_str_get_str(kind_in), "DOUBLE") == 0) {
        failstop_inject_addr = mp_obj_get_int_truncated(args[1]);
        return mp_const_none;
    }
    if (n_args == 1 && mp_obj_is_str(kind_in) && strcmp(mp_obj_str_get_str(kind_in), "MARK") == 0) {
        failstop_inject_mark = true;
        return mp_const_none;
    }
    uint8_t kind = fs_lookup(kind_in, failstop_kind_names, MP_ARRAY_SIZE(failstop_kind_names), "fault kind");
    if (kind != FAILSTOP_KIND_FATAL) {
        mp_raise_ValueError(MP_ERROR_TEXT("only FATAL can be injected"));
    }
    MP_STATE_THREAD(nlr_top) = NULL;
    mp_raise_msg(&mp_type_RuntimeError, MP_ERROR_TEXT("injected"));
}
static MP_DEFINE_CONST_FUN_OBJ_VAR_BETWEEN(mod_failstop_inject_obj, 1, 2, mod_failstop_inject);
#endif

#if MICROPY_FAILSTOP_REGION_API
static MP_DEFINE_STR_OBJ(mod_failstop_firmware_obj, MICROPY_FAILSTOP_FIRMWARE_ID);
#endif

static const mp_rom_map_elem_t mod_failstop_module_globals_table[] = {
    { MP_ROM_QSTR(MP_QSTR___name__), MP_ROM_QSTR(MP_QSTR_failstop) },
    #if MICROPY_FAILSTOP_FRAGILE
    // First: looked up on every `with failstop.fragile():` (the table is searched in order).
    { MP_ROM_QSTR(MP_QSTR_fragile), MP_ROM_PTR(&mod_failstop_fragile_fn[FS_FRAGILE_NEW]) },
    #endif
    { MP_ROM_QSTR(MP_QSTR_panic), MP_ROM_PTR(&mod_failstop_panic_obj) },
    { MP_ROM_QSTR(MP_QSTR_last), MP_ROM_PTR(&mod_failstop_last_obj) },
    { MP_ROM_QSTR(MP_QSTR_watchdog), MP_ROM_PTR(&mod_failstop_watchdog_obj) },
    { MP_ROM_QSTR(MP_QSTR_feed), MP_ROM_PTR(&mod_failstop_feed_obj) },
    { MP_ROM_QSTR(MP_QSTR_mark), MP_ROM_PTR(&mod_failstop_mark_obj) },
    { MP_ROM_QSTR(MP_QSTR_Record), MP_ROM_PTR(&mod_failstop_rec_type) },
    #if MICROPY_FAILSTOP_POLICY
    { MP_ROM_QSTR(MP_QSTR_policy), MP_ROM_PTR(&mod_failstop_policy_obj) },
    #endif
    #if MICROPY_FAILSTOP_RECOVERABLE
    { MP_ROM_QSTR(MP_QSTR_recoverable), MP_ROM_PTR(&mod_failstop_recoverable_obj) },
    #endif
    #if MICROPY_FAILSTOP_KEEPER
    { MP_ROM_QSTR(MP_QSTR_keeper), MP_ROM_PTR(&mod_failstop_keeper_obj) },
    #endif
    #if MICROPY_FAILSTOP_INJECT
    { MP_ROM_QSTR(MP_QSTR__inject), MP_ROM_PTR(&mod_failstop_inject_obj) },
    #endif
    #if MICROPY_FAILSTOP_REGION_API
    { MP_ROM_QSTR(MP_QSTR_records), MP_ROM_PTR(&mod_failstop_records_obj) },
    { MP_ROM_QSTR(MP_QSTR_clear), MP_ROM_PTR(&mod_failstop_clear_obj) },
    { MP_ROM_QSTR(MP_QSTR_dump), MP_ROM_PTR(&mod_failstop_dump_obj) },
    { MP_ROM_QSTR(MP_QSTR_reset_cause), MP_ROM_PTR(&mod_failstop_reset_cause_obj) },
    { MP_ROM_QSTR(MP_QSTR_boot_count), MP_ROM_PTR(&mod_failstop_boot_count_obj) },
    { MP_ROM_QSTR(MP_QSTR_safe_mode), MP_ROM_PTR(&mod_failstop_safe_mode_obj) },
    { MP_ROM_QSTR(MP_QSTR_crash_loop), MP_ROM_PTR(&mod_failstop_crash_loop_obj) },
    { MP_ROM_QSTR(MP_QSTR_PANIC), MP_ROM_QSTR(MP_QSTR_PANIC) },
    { MP_ROM_QSTR(MP_QSTR_OOM), MP_ROM_QSTR(MP_QSTR_OOM) },
    { MP_ROM_QSTR(MP_QSTR_STACK), MP_ROM_QSTR(MP_QSTR_STACK) },
    { MP_ROM_QSTR(MP_QSTR_UNHANDLED), MP_ROM_QSTR(MP_QSTR_UNHANDLED) },
    { MP_ROM_QSTR(MP_QSTR_WATCHDOG), MP_ROM_QSTR(MP_QSTR_WATCHDOG) },
    { MP_ROM_QSTR(MP_QSTR_HARDFAULT), MP_ROM_QSTR(MP_QSTR_HARDFAULT) },
    { MP_ROM_QSTR(MP_QSTR_FATAL), MP_ROM_QSTR(MP_QSTR_FATAL) },
    { MP_ROM_QSTR(MP_QSTR_REBOOT), MP_ROM_QSTR(MP_QSTR_REBOOT) },
    { MP_ROM_QSTR(MP_QSTR_HALT), MP_ROM_QSTR(MP_QSTR_HALT) },
    { MP_ROM_QSTR(MP_QSTR_RAISE), MP_ROM_QSTR(MP_QSTR_RAISE) },
    { MP_ROM_QSTR(MP_QSTR_FIRMWARE), MP_ROM_PTR(&mod_failstop_firmware_obj) },
    #endif
};
static MP_DEFINE_CONST_DICT(mod_failstop_module_globals, mod_failstop_module_globals_table);

const mp_obj_module_t mp_module_failstop = {
    .base = { &mp_type_module },
    .globals = (mp_obj_dict_t *)&mod_failstop_module_globals,
};
MP_REGISTER_MODULE(MP_QSTR_failstop, mp_module_failstop);

#if MICROPY_PY_MACHINE && MICROPY_MODULE_ATTR_DELEGATION
// machine.panic without patching the port's machine module.
extern const mp_obj_module_t mp_module_machine;
void mod_failstop_machine_attr(mp_obj_t self_in, qstr attr, mp_obj_t *dest) {
    (void)self_in;
    if (dest[0] == MP_OBJ_NULL && attr == MP_QSTR_panic) {
        dest[0] = MP_OBJ_FROM_PTR(&mod_failstop_panic_obj);
    }
}
MP_REGISTER_MODULE_DELEGATION(mp_module_machine, mod_failstop_machine_attr);
#endif
