// The emulated Raspberry Pi Pico: failstop's RPI_PICO firmware in rp2040js (npm, 1.4.1),
// with the pieces rp2040js lacks to behave like a board on a desk:
//  - a chip reset on watchdog TRIGGER or expiry: a new RP2040 instance that carries the
//    flash, SRAM (real SRAM keeps its contents over a watchdog reset), SCRATCH0-7 and
//    REASON over (RP2040.reset() is no chip reset: it erases the flash);
//  - flash erase/program: the bootrom's flash_range_erase ('RE') and flash_range_program
//    ('RP') done here (rp2040js's SSI drops writes), so littlefs and main.py work;
//  - a quiet USB CDC host: an OUT transfer with no host data waits (a NAK) instead of
//    completing empty, which would storm the chip with interrupts;
//  - USB start-of-frame interrupts in device mode (every 1 ms while the firmware enables
//    them): MicroPython flushes what it printed before the host opened the port on the
//    16th SOF after DTR, so without them the banner and boot output wait for host input;
//  - the NMI from IRQs in SYSCFG PROC0_NMI_MASK (rp2040js keeps the mask, unused);
//  - VREG_AND_CHIP_RESET's CHIP_RESET register (unmodelled in rp2040js): HAD_POR after a
//    power-on, HAD_RUN after a RUN-pin reset (control: pin_reset);
//  - the second core (rp2040js has one): a Cortex-M0+ stepping alongside core 0, started
//    through the bootrom's FIFO protocol (multicore_launch_core1), with its own NVIC,
//    VTOR, NMI mask, SIO CPUID, divider and interpolators; the SIO FIFOs and their IRQs
//    (SIO_IRQ_PROC0/1); SEV waking the other core's WFE; PSM FRCE_OFF for either core
//    (a core forced off stops where it is; a core 0 let go again stays stopped until the
//    chip reset that follows it in failstop's fault path);
//  - a host that has the port open but does not read (control: host_read): the CDC IN
//    transfer the device queued is NAKed until the host reads again (or the chip
//    resets: the port goes away), so the device's CDC FIFO fills as on a desk;
//  - HardFault on BKPT/UDF (rp2040js stops the simulation there) and on a bus error (a
//    CPU access to an unmapped address; rp2040js reads 0xffffffff and drops writes); a
//    fault inside the HardFault handler is a lockup: the CPU stops, the clock (and
//    watchdog) runs on;
//  - emulated time never runs ahead of wall time (idle waits are not skipped), so the
//    watchdog bites no earlier than on hardware (--fast skips idle time instead).
// The USB serial is bridged to stdin/stdout (raw bytes; the board powers off when stdin
// closes); runner events go to stderr
// (or --log) as lines "[rp2040] ...", e.g. "[rp2040] boot 2 reason=force".
//
// Usage: node run.mjs FIRMWARE.uf2|.bin [--flash FILE] [--max-boots N] [--fast]
//        [--log FILE] [--verbose] [--bootrom FILE] [--timeout SECONDS] [--control SOCKET]
//        [--drive DIR] [--keep] [--probe ADDR,... [--probe-end ADDR]]
// --probe: measure a fault path, as a debugger with a watchpoint on SP would: from the
// first time the CPU reaches one of these addresses (e.g. __wrap_m_malloc_fail) to the
// chip reset, the deepest stack below the SP at entry and the emulated time; with
// --probe-end, also up to that address (e.g. failstop_hal_reset: the record is written).
// Reported as a "probe" event.
// --drive: where the bootloader's RPI-RP2 drive appears while the chip is in USB boot mode
// (machine.bootloader(), `mpremote bootloader`); a UF2 file copied there is flashed.
// --control: a Unix socket for a test harness (as QEMU's QMP is for the QEMU board), one
// JSON object a line; a command's "id", if it has one, comes back in its answer.
// Commands: {"cmd": "read", "addr": A, "size": N} (memory as a debug
// probe reads it) -> {"reply": "read", "data": HEX}; {"cmd": "power_cycle", "max_boots": N}
// (SRAM lost, flash kept); {"cmd": "halt"} / {"cmd": "resume"} (a debugger's halt);
// {"cmd": "pin_reset"} (the RUN pin: a chip reset that keeps SRAM; REASON and SCRATCH
// cleared, CHIP_RESET reads HAD_RUN); {"cmd": "stall_after", "addr": A, "skip": K, "ms": M} (the CPU stalls M ms, the clock
// running on, when it returns from the (K+1)th call of the function at A, as a long
// interrupt handler or a flash write would stall it there; then a "stalled" event);
// {"cmd": "host_read", "on": B} (false: the host keeps the port open and stops reading;
// until true or the next chip reset); {"cmd": "status"} (boots, states, host_read and
// in_stalled (a device transfer waits for the host), emulated ms since power-on: sim_ms, and when the
// device last took host bytes / sent bytes to the host: in_sim_ms / out_sim_ms); {"cmd": "quit"}. Events to every client:
// {"event": "boots", "reasons": [R, ...], "capped": B} first (the boots so far), then
// {"event": "boot", "boot": N, "reason": R}, {"event": "capped"}, {"event": "lockup"}.
// rp2040js and the bootrom come from `make deps-rp2` ($FAILSTOP_CACHE/rp2), or from
// FAILSTOP_RP2040JS (path of rp2040js's dist/esm/index.js) and --bootrom.
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { pathToFileURL } from 'node:url';

const FLASH_BASE = 0x10000000;
const FLASH_SIZE = 2 * 1024 * 1024; // RPI_PICO: 2 MB (rp2040js models 16 MB)
const EXC_HARDFAULT = 3;
const WATCHDOG_BASE = 0x40058;
const REASON_NAMES = { 0: 'power_on', 1: 'timer', 2: 'force' };

const { values: opt, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    flash: { type: 'string' },
    'max-boots': { type: 'string', default: '0' },
    fast: { type: 'boolean', default: false },
    log: { type: 'string' },
    bootrom: { type: 'string' },
    timeout: { type: 'string', default: '0' },
    verbose: { type: 'boolean', default: false },
    control: { type: 'string' },
    drive: { type: 'string' },
    keep: { type: 'boolean', default: false },
    probe: { type: 'string' },
    'probe-end': { type: 'string' },
  },
});
if (positionals.length !== 1) {
  process.stderr.write('usage: node run.mjs FIRMWARE.uf2|.bin [--flash FILE] [--max-boots N] [--fast] [--log FILE]\n');
  process.exit(2);
}

const cache = process.env.FAILSTOP_CACHE || path.join(os.homedir(), '.cache', 'failstop');
const rp2040jsPath =
  process.env.FAILSTOP_RP2040JS || path.join(cache, 'rp2', 'node', 'node_modules', 'rp2040js', 'dist', 'esm', 'index.js');
const { Simulator, USBCDC } = await import(pathToFileURL(rp2040jsPath).href);

const logFd = opt.log ? fs.openSync(opt.log, 'a') : 2;
const clients = new Set();
function event(msg, obj) {
  fs.writeSync(logFd, `[rp2040] ${msg}\n`);
  if (obj) {
    const line = JSON.stringify(obj) + '\n';
    for (const c of clients) c.write(line);
  }
}
// rp2040js's own messages (unimplemented registers, which the flash helpers touch on
// every write, ...): to the log with --verbose, never to stdout.
// An access to an unmapped address by the CPU is a bus error, which a Cortex-M0+ takes
// as a HardFault; rp2040js only warns about it (and reads 0xffffffff). Noted here while
// the core executes an instruction, taken after it (see run()).
let inCore = false;
let busFaultPC = null;
const BUS_ERROR = /^(?:Read from invalid memory address|Write to undefined address): ([0-9a-f]+)/;
// The RP2040's address map, by 256 MB block, generously: rp2040js leaves some real
// registers unmodelled (e.g. XIP_CTRL at 0x14000000), which must not fault.
function mapped(addr) {
  switch (addr >>> 28) {
    case 0x0: return addr < 0x4000; // ROM
    case 0x1: // XIP, XIP_CTRL, SSI
    case 0x4: // APB peripherals
    case 0x5: // AHB-Lite: DMA, USB, PIO
    case 0xd: return true; // SIO
    case 0x2: return addr < 0x22000000; // SRAM and its aliases
    case 0xe: return addr < 0xe0100000; // the Cortex-M0+ private peripheral bus
    default: return false;
  }
}
const logger = {
  debug() {},
  info(c, m) {
    if (m === 'SEV') sev(); // rp2040js logs SEV and does nothing else
  },
  warn(c, m) {
    const bad = inCore && busFaultPC === null && BUS_ERROR.exec(m);
    if (bad && !mapped(parseInt(bad[1], 16) >>> 0)) {
      busFaultPC = (cur.PC - 2) >>> 0; // loads and stores are 16-bit: PC was advanced by 2
      event(`bus error at pc 0x${busFaultPC.toString(16)}: ${m}`);
    }
    if (opt.verbose) fs.writeSync(logFd, `[rp2040js] ${c}: ${m}\n`);
  },
  error(c, m) { fs.writeSync(logFd, `[rp2040js] error ${c}: ${m}\n`); },
};
console.warn = (...a) => logger.warn('console', a.join(' ')); // sio.js writes there directly
console.error = (...a) => logger.error('console', a.join(' '));

// --- images ------------------------------------------------------------------------

function loadImage(file, flash) {
  const data = fs.readFileSync(file);
  if (data.length >= 512 && data.readUInt32LE(0) === 0x0a324655 && data.readUInt32LE(4) === 0x9e5d5157) {
    for (let off = 0; off + 512 <= data.length; off += 512) {
      const flags = data.readUInt32LE(off + 8);
      const addr = data.readUInt32LE(off + 12);
      const size = data.readUInt32LE(off + 16);
      if (flags & 1) continue; // "not main flash"
      if (addr < FLASH_BASE || addr + size > FLASH_BASE + flash.length) continue;
      flash.set(data.subarray(off + 32, off + 32 + size), addr - FLASH_BASE);
    }
  } else {
    flash.set(data, 0);
  }
}

const bootromFile = opt.bootrom || path.join(cache, 'rp2', 'bootrom-b1.bin');
const bootromBytes = fs.readFileSync(bootromFile);
const bootrom = new Uint32Array(bootromBytes.buffer, bootromBytes.byteOffset, bootromBytes.length / 4);

// The ROM function table (bootrom 0x14: 16-bit pointer to {code, 16-bit address} pairs).
function romFunc(c1, c2) {
  const code = c1.charCodeAt(0) | (c2.charCodeAt(0) << 8);
  for (let p = bootromBytes.readUInt16LE(0x14); ; p += 4) {
    const c = bootromBytes.readUInt16LE(p);
    if (c === 0) throw new Error(`bootrom: no function ${c1}${c2}`);
    if (c === code) return bootromBytes.readUInt16LE(p + 2) & ~1;
  }
}
const ROM_ERASE = romFunc('R', 'E');
const ROM_PROGRAM = romFunc('R', 'P');
const ROM_USB_BOOT = romFunc('U', 'B'); // reset_usb_boot: machine.bootloader(), BOOTSEL

// --- board state ---------------------------------------------------------------------

// Flash as the board keeps it: the firmware image over the previous contents (--flash).
// With --keep, an existing flash file is the board's flash as it is (a board flashed
// before, e.g. through its bootloader, keeps that firmware); FIRMWARE fills a new one.
const flash = new Uint8Array(16 * 1024 * 1024).fill(0xff);
const flashExists = opt.flash && fs.existsSync(opt.flash);
if (flashExists) {
  flash.set(fs.readFileSync(opt.flash).subarray(0, FLASH_SIZE), 0);
}
if (!(opt.keep && flashExists)) loadImage(positionals[0], flash);
function saveFlash() {
  if (opt.flash) fs.writeFileSync(opt.flash, flash.subarray(0, FLASH_SIZE));
}

let sim, mcu, core, clock, cdc;
let chipResetBits = 0; // VREG_AND_CHIP_RESET.CHIP_RESET: what the last chip-level reset was
const HAD_POR = 1 << 8;
const HAD_RUN = 1 << 16;
let core1 = null; // the second core (see "two cores" below)
let cur = null; // the core executing the current instruction
let curId = 0;
let boots = 0;
let bootReasons = []; // since power-on, for a client that connects late
let lockedUp = false;
let resetPending = false;
let paused = false; // the boot cap stopped the board
let halted = false; // a debugger halted the CPU (control: halt/resume)
let maxBoots = Number(opt['max-boots']);
let bootWall = 0;
let simBefore = 0; // emulated ns of the earlier boots
const simMs = () => (simBefore + (clock ? clock.nanos : 0)) / 1e6; // since power-on
let hostReading = true; // false: the host has the port open and does not read (control)
let stalledIN = null; // the device's IN transfer the host has not taken (DPRAM offset)
let inSimMs = 0; // when the device last took host bytes (emulated ms since power-on)
let outSimMs = 0; // when the device last sent bytes to the host
const hostQueue = []; // host bytes not yet taken by the device
const wallStart = performance.now();

function boot(carry) {
  if (maxBoots > 0 && boots >= maxBoots) {
    paused = true;
    event(`capped after ${boots} boots`, { event: 'capped', boots });
    return;
  }
  boots++;
  sim = new Simulator();
  mcu = sim.rp2040;
  core = mcu.core;
  clock = sim.clock;
  mcu.logger = logger;
  mcu.loadBootrom(bootrom); // also "resets", which fills the flash with 0xff: copy after
  mcu.flash.set(flash);
  const wd = mcu.peripherals[WATCHDOG_BASE];
  if (carry) {
    mcu.sram.set(carry.sram);
    wd.scratchData.set(carry.scratch);
    wd.reason = carry.reason;
    if (carry.pin) chipResetBits = HAD_RUN;
  } else {
    chipResetBits = HAD_POR;
  }
  const vreg = mcu.peripherals[0x40064];
  const vregRead = vreg.readUint32.bind(vreg);
  vreg.readUint32 = (offset) => (offset === 8 ? chipResetBits : vregRead(offset));
  wd.onWatchdogTrigger = () => {
    // Finish the current instruction, then reset (see run()).
    wd.alarm.enable = wd.timer.enable = false;
    resetPending = true;
  };
  routeNMI(core);
  mcu.onBreak = (code) => {
    // BKPT/UDF: on a Cortex-M0+ without a debugger, a HardFault.
    hardFault((cur.PC - cur.breakRewind) >>> 0, `bkpt/udf 0x${code.toString(16)}`);
  };
  setupCores();
  cdc = new USBCDC(mcu.usbCtrl);
  quietCDC(cdc, mcu.usbCtrl);
  hostReading = true; // a new port after a reset: the host reads again
  stalledIN = null;
  stallableIN(cdc, mcu.usbCtrl);
  deviceSOF(mcu.usbCtrl, clock);
  cdc.onDeviceConnected = () => {
    event(`usb connected (sim ${(clock.nanos / 1e6).toFixed(1)} ms)`);
    feedHost();
  };
  cdc.onSerialData = (buf) => {
    outSimMs = simMs();
    process.stdout.write(Buffer.from(buf));
  };
  lockedUp = false;
  resetPending = false;
  bootWall = performance.now();
  core.PC = FLASH_BASE; // boot2 (the bootrom's flash-boot path needs a real SSI)
  const reason = carry?.pin ? 'pin' : REASON_NAMES[wd.reason] ?? String(wd.reason);
  bootReasons.push(reason);
  event(`boot ${boots} reason=${reason}`, { event: 'boot', boot: boots, reason, sim_ms: simMs() });
}

// SYSCFG PROC0_NMI_MASK: IRQs set there raise the NMI (rp2040js keeps the mask but does
// not route them). The NMI is taken when the OR of the masked IRQs rises.
function routeNMI(core) {
  const setInterrupt = core.setInterrupt.bind(core);
  core.setInterrupt = (irq, value) => {
    const before = core.pendingInterrupts & core.interruptNMIMask;
    setInterrupt(irq, value);
    if (!before && (core.pendingInterrupts & core.interruptNMIMask)) {
      core.pendingNMI = true;
      core.interruptsUpdated = true;
      core.waiting = false;
    }
  };
}

// A HardFault with the stacked PC at the faulting instruction; in the HardFault handler
// (or NMI), a lockup.
function hardFault(pc, what) {
  const c = cur;
  if (c.IPSR === EXC_HARDFAULT || c.IPSR === 2) {
    if (c === core) lockedUp = true;
    else core1State = 'locked';
    event(`lockup at 0x${pc.toString(16)} (${what} in handler ${c.IPSR}, core ${curId})`, { event: 'lockup', core: curId });
    return;
  }
  c.PC = pc;
  c.exceptionEntry(EXC_HARDFAULT);
}

// --- two cores -------------------------------------------------------------------------
// rp2040js models core 0 only. Core 1 is a second CortexM0Core on the same chip: it
// shares memory and peripherals; what is per core on the RP2040 is swapped in while it
// executes (rp2040js's PPB, i.e. NVIC/VTOR/SCB, follows mcu.core; the SIO's CPUID,
// divider and interpolators are per core). Each IRQ line reaches both NVICs, except the
// SIO FIFO IRQs (PROC0 to core 0, PROC1 to core 1).
const SIO_CPUID = 0x000;
const SIO_FIFO_ST = 0x050;
const SIO_FIFO_WR = 0x054;
const SIO_FIFO_RD = 0x058;
const FIFO_DEPTH = 8;
const IRQ_SIO_PROC0 = 15;
const IRQ_SIO_PROC1 = 16;
const PSM_BASE = 0x40010;
const PSM_FRCE_OFF = 0x04;
const PSM_PROC0 = 1 << 15;
const PSM_PROC1 = 1 << 16;
const SYSCFG_BASE = 0x40004;
// Where core 1 goes when its entry function returns: back to the bootrom's wait.
const CORE1_RETURN = 0x000000f0;

let core1State = 'bootrom'; // 'off' (PSM), 'bootrom' (waits for a launch), 'running', 'locked'
let core0Off = false; // PSM FRCE_OFF.PROC0 (set by core 1)
let fifo = [[], []]; // fifo[n]: words core n reads
let fifoErr = [0, 0]; // sticky WOF (4) / ROE (8) per core
let bootSeq = []; // core 1's bootrom: the words it took so far
let sioState = [null, null]; // divider and interpolators of the core not executing

function setupCores() {
  core1 = new core.constructor(mcu);
  routeNMI(core1);
  core1State = 'bootrom';
  core0Off = false;
  fifo = [[], []];
  fifoErr = [0, 0];
  bootSeq = [];
  sioState = [null, null];
  cur = core;
  curId = 0;
  mcu.setInterrupt = (irq, value) => {
    if (irq !== IRQ_SIO_PROC1) core.setInterrupt(irq, value);
    if (irq !== IRQ_SIO_PROC0) core1.setInterrupt(irq, value);
  };
  const sio = mcu.sio;
  const sioRead = sio.readUint32.bind(sio);
  const sioWrite = sio.writeUint32.bind(sio);
  sio.readUint32 = (offset) => {
    switch (offset) {
      case SIO_CPUID:
        return curId;
      case SIO_FIFO_ST:
        return (fifo[curId].length ? 1 : 0) | (fifo[1 - curId].length < FIFO_DEPTH ? 2 : 0) | fifoErr[curId];
      case SIO_FIFO_RD: {
        const q = fifo[curId];
        if (!q.length) {
          fifoErr[curId] |= 8;
          sioIrq(curId);
          return 0;
        }
        const v = q.shift();
        sioIrq(curId);
        return v;
      }
    }
    return sioRead(offset);
  };
  sio.writeUint32 = (offset, value) => {
    switch (offset) {
      case SIO_FIFO_ST:
        fifoErr[curId] &= ~(value & 0xc);
        sioIrq(curId);
        return;
      case SIO_FIFO_WR:
        fifoPush(curId, value >>> 0);
        return;
    }
    sioWrite(offset, value);
  };
  const syscfg = mcu.peripherals[SYSCFG_BASE];
  syscfg.readUint32 = (offset) => (offset === 0 ? core.interruptNMIMask : offset === 4 ? core1.interruptNMIMask : 0);
  syscfg.writeUint32 = (offset, value) => {
    if (offset === 0) core.interruptNMIMask = value >>> 0;
    if (offset === 4) core1.interruptNMIMask = value >>> 0;
  };
  const psm = mcu.peripherals[PSM_BASE];
  const psmWrite = psm.writeUint32.bind(psm);
  psm.writeUint32 = (offset, value) => {
    const before = psm.frceOff;
    psmWrite(offset, value);
    if (offset !== PSM_FRCE_OFF) return;
    const on = psm.frceOff & ~before;
    const off = before & ~psm.frceOff;
    if (on & PSM_PROC1) {
      core1State = 'off';
      event('core 1 forced off', { event: 'core1', state: 'off' });
    }
    if (off & PSM_PROC1) {
      // Out of reset: the bootrom drains its FIFO and tells core 0 with a 0.
      core1State = 'bootrom';
      bootSeq = [];
      fifo[1] = [];
      fifoPush(1, 0);
    }
    if (on & PSM_PROC0) {
      core0Off = true;
      event('core 0 forced off', { event: 'core0', state: 'off' });
    }
  };
}

function coreById(id) {
  return id ? core1 : core;
}

function sioIrq(id) {
  coreById(id).setInterrupt(id ? IRQ_SIO_PROC1 : IRQ_SIO_PROC0, fifo[id].length > 0 || fifoErr[id] !== 0);
}

// A word from core `from` to the other core's FIFO.
function fifoPush(from, v) {
  const to = 1 - from;
  if (to === 1 && core1State === 'bootrom') {
    bootromTake(v);
    return;
  }
  if (to === 1 && core1State === 'off') return; // held in reset: the word is lost
  if (fifo[to].length >= FIFO_DEPTH) {
    fifoErr[from] |= 4;
    sioIrq(from);
    return;
  }
  fifo[to].push(v);
  sioIrq(to);
}

// Core 1's bootrom: every word is echoed back; 0, 0, 1, vector table, stack pointer,
// entry starts core 1 there (pico-sdk's multicore_launch_core1_raw sends exactly that).
function bootromTake(v) {
  if (v === 0) fifo[1] = [];
  bootSeq.push(v);
  if (bootSeq.length > 6) bootSeq.shift();
  if (fifo[0].length < FIFO_DEPTH) fifo[0].push(v);
  sioIrq(0);
  wake(core);
  const [a, b, c, vt, sp, entry] = bootSeq;
  if (bootSeq.length === 6 && a === 0 && b === 0 && c === 1) {
    const k = core1;
    k.registers.fill(0);
    k.SPSEL = 0;
    k.bankedSP = 0;
    k.SP = sp;
    k.PC = entry & ~1;
    k.LR = CORE1_RETURN | 1;
    k.VTOR = vt >>> 0;
    k.PM = false;
    k.IPSR = 0;
    k.currentMode = 0; // thread mode
    k.waiting = false;
    k.eventRegistered = false;
    k.pendingInterrupts = 0;
    k.enabledInterrupts = 0;
    core1State = 'running';
    bootSeq = [];
    event(`core 1 launched at 0x${(entry >>> 0).toString(16)}`, { event: 'core1', state: 'running', pc: entry >>> 0 });
  }
}

function wake(c) {
  c.eventRegistered = true;
  c.waiting = false;
}

// SEV: an event for the other core (its WFE returns).
function sev() {
  wake(curId ? core : core1);
}

// Swap in the per-core state of core `id` before it executes.
function switchTo(id) {
  if (id === curId) return;
  const sio = mcu.sio;
  sioState[curId] = [sio.divDividend, sio.divDivisor, sio.divQuotient, sio.divRemainder, sio.divCSR, sio.interp0, sio.interp1];
  const st = sioState[id] ?? [0, 1, 0, 0, 0, new sio.interp0.constructor(0), new sio.interp1.constructor(1)];
  [sio.divDividend, sio.divDivisor, sio.divQuotient, sio.divRemainder, sio.divCSR, sio.interp0, sio.interp1] = st;
  mcu.core = coreById(id);
  cur = mcu.core;
  curId = id;
}

function chipReset() {
  probeReport();
  const wd = mcu.peripherals[WATCHDOG_BASE];
  flash.set(mcu.flash.subarray(0, flash.length));
  saveFlash();
  simBefore += clock.nanos;
  const carry = { sram: mcu.sram.slice(), scratch: wd.scratchData.slice(), reason: wd.reason };
  event(`watchdog reset (REASON=${wd.reason}) after ${(clock.nanos / 1e6).toFixed(1)} ms`);
  boot(carry);
}

// OUT transfers complete only when the host has data (as a real host NAKs).
function quietCDC(cdc, usb) {
  let pending = null;
  usb.onEndpointRead = (endpoint, size) => {
    if (endpoint !== cdc.outEndpoint) return;
    pending = size;
    feedHost();
  };
  cdc.flushHost = () => {
    if (pending === null || cdc.txFIFO.itemCount === 0) return;
    const buffer = new Uint8Array(Math.min(pending, cdc.txFIFO.itemCount));
    for (let i = 0; i < buffer.length; i++) buffer[i] = cdc.txFIFO.pull();
    pending = null;
    usb.endpointReadDone(cdc.outEndpoint, buffer);
  };
}

// A host that does not read: the device's IN transfer on the CDC data endpoint (buffer
// control written with AVAILABLE) is held, as a host NAKs it, until the host reads.
const EP0_IN_BUFFER_CONTROL = 0x80;
const BUF_CTRL_AVAILABLE = 1 << 10;
function stallableIN(cdc, usb) {
  const updated = usb.DPRAMUpdated.bind(usb);
  usb.DPRAMUpdated = (offset, value) => {
    if (!hostReading && cdc.inEndpoint > 0 && offset === EP0_IN_BUFFER_CONTROL + 8 * cdc.inEndpoint
        && value & (BUF_CTRL_AVAILABLE | (BUF_CTRL_AVAILABLE << 16))) {
      stalledIN = offset;
      return;
    }
    updated(offset, value);
  };
  usb.releaseIN = () => {
    if (stalledIN === null) return;
    const offset = stalledIN;
    stalledIN = null;
    updated(offset, mcu.usbDPRAMView.getUint32(offset, true));
  };
}

// rp2040js generates SOF only in host mode. Device mode: raise DEV_SOF every 1 ms
// while enabled; reading SOF_RD clears it (RP2040 datasheet, USB INTR).
function deviceSOF(usb, clock) {
  const INTR_DEV_SOF = 1 << 17;
  const SOF_RD = 0x48;
  const read = usb.readUint32.bind(usb);
  usb.readUint32 = (offset) => {
    const value = read(offset);
    if (offset === SOF_RD && usb.intRaw & INTR_DEV_SOF) {
      usb.intRaw &= ~INTR_DEV_SOF;
      usb.checkInterrupts();
    }
    return value;
  };
  const alarm = clock.createAlarm(() => {
    if (usb.intEnable & INTR_DEV_SOF) {
      usb.sofFrameNumber = (usb.sofFrameNumber + 1) & 0x7ff;
      usb.intRaw |= INTR_DEV_SOF;
      usb.checkInterrupts();
    }
    alarm.schedule(1e6);
  });
  alarm.schedule(1e6);
}

function feedHost() {
  if (!cdc || !cdc.initialized) return;
  while (hostQueue.length > 0 && !cdc.txFIFO.full) cdc.sendSerialByte(hostQueue.shift());
  const before = cdc.txFIFO.itemCount;
  cdc.flushHost();
  if (cdc.txFIFO.itemCount < before) inSimMs = simMs();
}

// --- flash programming glue ------------------------------------------------------

function romHook() {
  const pc = cur.PC;
  if (pc === ROM_USB_BOOT) {
    enterBootloader();
    return;
  }
  if (pc !== ROM_ERASE && pc !== ROM_PROGRAM) return;
  const r = cur.registers;
  if (pc === ROM_ERASE) {
    // flash_range_erase(addr, count, block_size, block_cmd)
    const addr = r[0] >>> 0, count = r[1] >>> 0;
    mcu.flash.fill(0xff, addr, Math.min(addr + count, mcu.flash.length));
  } else {
    // flash_range_program(addr, data, count): NOR flash only clears bits
    const addr = r[0] >>> 0, data = r[1] >>> 0, count = r[2] >>> 0;
    for (let i = 0; i < count && addr + i < mcu.flash.length; i++) {
      mcu.flash[addr + i] &= mcu.readUint8(data + i);
    }
  }
  cur.PC = cur.LR & ~1; // return to the caller
}

// --- the bootloader's USB drive -------------------------------------------------------
// In USB boot mode the bootrom is a mass-storage device, the RPI-RP2 drive: a UF2 file
// copied onto it is written to flash, then the chip restarts into it. Here the drive is
// the directory --drive, which exists only while the chip is in the bootloader.

const INFO_UF2 = 'UF2 Bootloader v3.0\r\nModel: Raspberry Pi RP2\r\nBoard-ID: RPI-RP2\r\n';
let inBootloader = false;
let drivePoll = null;

function leaveBootloader() {
  if (drivePoll !== null) clearInterval(drivePoll);
  drivePoll = null;
  if (inBootloader && opt.drive) fs.rmSync(opt.drive, { recursive: true, force: true });
  inBootloader = false;
}

function enterBootloader() {
  flash.set(mcu.flash.subarray(0, flash.length));
  saveFlash();
  inBootloader = true;
  if (!opt.drive) {
    event('bootloader (no --drive: the RPI-RP2 drive is not emulated; power-cycle to leave)', { event: 'bootloader' });
    return;
  }
  fs.mkdirSync(opt.drive, { recursive: true });
  fs.writeFileSync(path.join(opt.drive, 'INFO_UF2.TXT'), INFO_UF2);
  event(`bootloader: drive RPI-RP2 at ${opt.drive}`, { event: 'bootloader', drive: opt.drive });
  drivePoll = setInterval(() => {
    const blocks = completeUF2(opt.drive);
    if (!blocks) return;
    leaveBootloader(); // the drive goes away
    for (const b of blocks) flash.set(b.data, b.addr - FLASH_BASE);
    saveFlash();
    event(`bootloader: ${blocks.length} UF2 blocks written, restarting`, { event: 'flashed', blocks: blocks.length });
    simBefore += clock.nanos;
    boot(null); // the bootrom used the SRAM: nothing of it is kept
    if (!paused) setImmediate(run);
  }, 100);
}

// The blocks of a .uf2 file on the drive once all of them have arrived (null before).
function completeUF2(dir) {
  for (const name of fs.readdirSync(dir)) {
    if (!name.toLowerCase().endsWith('.uf2')) continue;
    const data = fs.readFileSync(path.join(dir, name));
    const blocks = [];
    let total = -1;
    for (let off = 0; off + 512 <= data.length; off += 512) {
      if (data.readUInt32LE(off) !== 0x0a324655 || data.readUInt32LE(off + 4) !== 0x9e5d5157) return null;
      const flags = data.readUInt32LE(off + 8);
      const addr = data.readUInt32LE(off + 12);
      const size = data.readUInt32LE(off + 16);
      total = data.readUInt32LE(off + 24);
      if (flags & 1 || addr < FLASH_BASE || addr + size > FLASH_BASE + FLASH_SIZE) continue;
      blocks.push({ addr, data: data.subarray(off + 32, off + 32 + size) });
    }
    if (total > 0 && data.length / 512 >= total) return blocks;
  }
  return null;
}

// --- fault-path probe (--probe) ---------------------------------------------------

const probeAt = new Set((opt.probe || '').split(',').filter(Boolean).map((a) => Number(a) & ~1));
const probeEnd = opt['probe-end'] ? Number(opt['probe-end']) & ~1 : -1;
let probe = null;

function probeStep() {
  const pc = core.PC;
  if (probe === null) {
    if (probeAt.has(pc)) probe = { at: pc, sp: core.SP, min: core.SP, t0: clock.nanos, end: null };
    return;
  }
  const sp = core.SP;
  if (sp < probe.min) probe.min = sp;
  if (pc === probeEnd && probe.end === null) probe.end = { ns: clock.nanos - probe.t0, min: probe.min };
}

function probeReport() {
  if (probe === null) return;
  const p = probe;
  probe = null;
  const r = {
    event: 'probe', at: p.at, stack: p.sp - p.min, ns: clock.nanos - p.t0,
    end_stack: p.end ? p.sp - p.end.min : null, end_ns: p.end ? p.end.ns : null,
  };
  event(`probe 0x${p.at.toString(16)}: ${r.stack} B of stack, ${(r.ns / 1e3).toFixed(1)} us to the reset`, r);
}

// --- a stall at a function's return (control: stall_after) -----------------------------

let stall = null; // { at, skip, ns, ret }

function stallStep() {
  const pc = core.PC;
  if (stall.ret === null) {
    if (pc === stall.at) {
      if (stall.skip > 0) stall.skip--;
      else stall.ret = (core.LR & ~1) >>> 0;
    }
    return;
  }
  if (pc !== stall.ret) return;
  const s = stall;
  stall = null;
  clock.tick(s.ns); // alarms due meanwhile fire; their interrupts are taken next
  event(`stalled ${(s.ns / 1e6).toFixed(1)} ms at 0x${pc.toString(16)}`, { event: 'stalled', pc, sim_ms: simMs() });
}

// --- main loop ---------------------------------------------------------------------

const CYCLE_NS = 1e9 / 125000000;

// One instruction of the current core; a bus error it caused is a HardFault.
function step() {
  inCore = true;
  const cycles = cur.executeInstruction();
  inCore = false;
  if (busFaultPC !== null) {
    const pc = busFaultPC;
    busFaultPC = null;
    hardFault(pc, 'bus error');
  }
  return cycles;
}

function run() {
  if (paused || halted || inBootloader) return;
  const sliceEnd = performance.now() + 20;
  for (let n = 1; ; n++) {
    if (resetPending) {
      chipReset();
      if (paused) return;
    }
    const run0 = !core0Off && !lockedUp && !core.waiting;
    const run1 = core1State === 'running' && !core1.waiting;
    if (!run0 && !run1) {
      let delta = clock.nanosToNextAlarm;
      if (delta <= 0) {
        setTimeout(run, 1); // nothing scheduled: wait for the host
        return;
      }
      if (!opt.fast) {
        const ahead = clock.nanos + delta - (performance.now() - bootWall) * 1e6;
        if (ahead > 0) {
          // Do not run ahead of wall time: advance as far as wall time allows, then sleep
          // until the next alarm is due (an idle chip costs the host next to nothing).
          if (delta > ahead) clock.tick(delta - ahead);
          setTimeout(run, Math.min(10, Math.max(1, ahead / 1e6)));
          return;
        }
      }
      clock.tick(delta);
    } else {
      let cycles = 0;
      if (run0) {
        romHook();
        if (inBootloader) return; // the chip is the RPI-RP2 drive now (see enterBootloader)
        if (probeAt.size) probeStep();
        if (stall !== null) stallStep();
        cycles = step();
      }
      if (run1) {
        switchTo(1);
        if (core1.PC === CORE1_RETURN) {
          core1State = 'bootrom'; // its entry function returned
          event('core 1 returned to the bootrom', { event: 'core1', state: 'bootrom' });
        } else {
          romHook();
          cycles = Math.max(cycles, step());
        }
        switchTo(0);
      }
      clock.tick(cycles * CYCLE_NS);
    }
    if ((n & 0xfff) === 0 && performance.now() > sliceEnd) break;
  }
  setImmediate(run);
}

process.stdin.on('data', (data) => {
  for (const b of data) hostQueue.push(b);
  feedHost();
});
// The host side went away (its end of stdin closed, e.g. the harness died): power off,
// rather than run on unattended.
process.stdin.on('end', () => finish(0));

// --- control socket ------------------------------------------------------------------

function control(req) {
  switch (req.cmd) {
    case 'read': {
      const out = Buffer.alloc(req.size);
      for (let i = 0; i < req.size; i++) out[i] = mcu.readUint8(req.addr + i);
      return { reply: 'read', data: out.toString('hex') };
    }
    case 'power_cycle': {
      // Power off and on: SRAM and peripherals lost, flash kept, the boot count restarts.
      flash.set(mcu.flash.subarray(0, flash.length));
      saveFlash();
      simBefore += clock.nanos;
      boots = 0;
      bootReasons = [];
      maxBoots = Number(req.max_boots ?? 0);
      const stopped = paused || inBootloader; // else the live loop picks up the new chip
      paused = false;
      leaveBootloader();
      boot(null);
      if (stopped) setImmediate(run);
      return { reply: 'power_cycle' };
    }
    case 'halt':
      // As a debugger halts the core: nothing runs, not even the clock (the watchdog
      // stops too, as pico-sdk's watchdog_enable(..., pause_on_debug=true) asks).
      halted = true;
      return { reply: 'halt' };
    case 'resume':
      if (halted) {
        halted = false;
        setImmediate(run);
      }
      return { reply: 'resume' };
    case 'pin_reset': {
      // The RUN pin: SRAM kept, the watchdog (REASON, SCRATCH) and everything else reset.
      probeReport();
      flash.set(mcu.flash.subarray(0, flash.length));
      saveFlash();
      simBefore += clock.nanos;
      const carry = { sram: mcu.sram.slice(), scratch: new Uint32Array(8), reason: 0, pin: true };
      event('RUN pin reset');
      const stopped = paused || inBootloader;
      paused = false;
      leaveBootloader();
      boot(carry);
      if (stopped) setImmediate(run);
      return { reply: 'pin_reset' };
    }
    case 'stall_after':
      stall = { at: Number(req.addr) & ~1, skip: Number(req.skip ?? 0), ns: Number(req.ms) * 1e6, ret: null };
      return { reply: 'stall_after' };
    case 'host_read':
      hostReading = !!req.on;
      if (hostReading) mcu.usbCtrl.releaseIN();
      return { reply: 'host_read', on: hostReading };
    case 'status':
      return {
        reply: 'status', boots, paused, halted, bootloader: inBootloader, lockedUp,
        sim_ms: simMs(), in_sim_ms: inSimMs, out_sim_ms: outSimMs,
        host_read: hostReading, in_stalled: stalledIN !== null, core1: core1State, core0_off: core0Off,
        pc: core.PC, primask: core.PM, waiting: core.waiting, ipsr: core.IPSR,
      };
    case 'quit':
      setImmediate(() => finish(0));
      return { reply: 'quit' };
    default:
      return { error: `unknown command ${req.cmd}` };
  }
}

if (opt.control) {
  if (fs.existsSync(opt.control)) fs.unlinkSync(opt.control);
  net.createServer((sock) => {
    clients.add(sock);
    // What happened before this client came: every boot since power-on so far.
    sock.write(JSON.stringify({ event: 'boots', reasons: bootReasons, capped: paused }) + '\n');
    let pending = '';
    sock.on('data', (d) => {
      pending += d.toString();
      let i;
      while ((i = pending.indexOf('\n')) >= 0) {
        const line = pending.slice(0, i);
        pending = pending.slice(i + 1);
        let reply;
        let id;
        try {
          const req = JSON.parse(line);
          id = req.id;
          reply = control(req);
        } catch (e) {
          reply = { error: String(e) };
        }
        // The answer carries its request's id (as QMP's do): a client with several
        // commands in flight, from several threads, matches each answer to its command.
        if (id !== undefined) reply = { ...reply, id };
        sock.write(JSON.stringify(reply) + '\n');
      }
    });
    sock.on('close', () => clients.delete(sock));
    sock.on('error', () => clients.delete(sock));
  }).listen(opt.control);
}

function finish(code) {
  leaveBootloader();
  if (mcu) {
    flash.set(mcu.flash.subarray(0, flash.length));
    saveFlash();
    event(`exit: boots=${boots} sim=${((simBefore + clock.nanos) / 1e6).toFixed(1)} ms wall=${(performance.now() - wallStart).toFixed(0)} ms`);
  }
  process.exit(code);
}
process.on('SIGTERM', () => finish(0));
process.on('SIGINT', () => finish(0));
if (Number(opt.timeout) > 0) setTimeout(() => { event('timeout'); finish(1); }, Number(opt.timeout) * 1000);

boot(null);
run();
