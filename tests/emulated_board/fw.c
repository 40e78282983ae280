/*
 * fw.c - the project's emulated sensor board, for the end-to-end serial test.
 *
 * Plain avr-libc for an ATmega328P (Arduino Uno), no Arduino core. It runs in
 * `qemu-system-avr -machine uno`, whose USART appears on a Linux
 * pseudo-terminal; the capture reads it like a real board. The Python model
 * of this stream is tests/emulated_board/__init__.py (`expected_lines`): keep
 * the two in step.
 *
 * Output, one line per reading, "\r\n" terminated (Arduino println style):
 *     sensor_001,<seq>,<temp>,<humidity>,<pressure>,<vibration>,<battery>
 * seq counts the readings 0, 1, 2, ... without gaps. Values are a random walk
 * driven by a 32-bit LCG seeded with SEED, so the stream is deterministic.
 *
 * Malformed lines: when BAD_EVERY > 0, one extra malformed line goes out just
 * before each reading whose seq is a positive multiple of BAD_EVERY (it takes
 * no seq). Kinds rotate 0..6 (all of them on by default), their random parts
 * drawn from a second LCG so that the readings do not depend on them:
 *     0 truncated    the coming line cut after 1..24 bytes, then EOL
 *     1 garbage      0xFF 0x00 and 3..12 more bytes (never UTF-8), then EOL
 *     2 missing      id,seq,temp,humidity,pressure (two fields short)
 *     3 non-finite   the temperature printed as "nan"
 *     4 empty        just the EOL
 *     5 extra field  a whole line plus ",7"
 *     6 fragment     the first 1..FRAGMENT_MAX bytes of the coming reading
 *                    with NO EOL, so that reading arrives glued to them
 *                    ("sensor_001,1" + "sensor_001,18,21.42,..."): what a
 *                    board that resets mid-line leaves behind. The cut is
 *                    always shorter than a reading, so the glued line holds
 *                    one complete reading and the fragment before it.
 *
 * Commands, one byte each, answered with "# ok <c>" between two lines:
 *     r  restart (seq 0 and both generators reseeded: the same bytes as boot)
 *     p  pause            g  go            ?  an info line
 * Anything else is answered with "# unknown command". Only the last byte
 * received is kept, so a host sends one command and waits for its answer.
 *
 * Time under QEMU 7.2 (why the code looks the way it does):
 *  - the CPU runs as fast as the host allows, so busy-wait delays such as
 *    _delay_ms() are far too short; Timer1 runs on QEMU's virtual clock,
 *    which follows wall time, so all timing here comes from Timer1;
 *  - Timer1 runs free (normal mode, clk/1024, 64 us per count) and is
 *    polled: QEMU re-arms a compare-match timer late on every match, so a
 *    1 kHz CTC tick runs slow;
 *  - `sleep` never wakes up in QEMU, so the main loop busy-polls.
 *
 * Options (-DNAME=value): PERIOD_MS (100; one reading every N ms on a
 * fixed-rate schedule, 0 = as fast as possible), BAD_EVERY (9), SEED
 * (20240101), SENSOR_ID ("sensor_001"), BAUD (115200; QEMU ignores it).
 */
#ifndef F_CPU
#define F_CPU 16000000UL
#endif
#ifndef BAUD
#define BAUD 115200UL
#endif
#ifndef PERIOD_MS
#define PERIOD_MS 100
#endif
#ifndef BAD_EVERY
#define BAD_EVERY 9
#endif
#ifndef SEED
#define SEED 20240101UL
#endif
#ifndef SENSOR_ID
#define SENSOR_ID "sensor_001"
#endif

/* 115200 baud from 16 MHz is 2.1 % off, as on every real Uno. */
#define BAUD_TOL 3

#include <avr/interrupt.h>
#include <avr/io.h>
#include <avr/pgmspace.h>
#include <stdint.h>
#include <util/atomic.h>
#include <util/setbaud.h>

#define BAD_SEED 0x2545F491UL
#define N_KINDS 7
/* A reading is at least 38 bytes (seq >= 9 has two digits): a cut of at most
 * 32 ends inside the id, the seq or one of the first three values. */
#define FRAGMENT_MAX 32

/* ------------------------------------------------------------ clock */

static uint16_t t1_prev;
static uint32_t now_us; /* wraps after 71 minutes; compared by difference */

/* Microseconds since boot. Call at least every 4 s (one Timer1 period). */
static uint32_t clock_us(void) {
    uint16_t t = TCNT1;
    uint16_t step = (uint16_t)(t - t1_prev);
    /* QEMU may show the counter a little behind its last value around an
     * overflow; a "step" of more than half the range is such a glitch. */
    if (step < 0x8000u) {
        t1_prev = t;
        now_us += (uint32_t)step * 64u;
    }
    return now_us;
}

/* ------------------------------------------------------------ serial */

static volatile uint8_t pending_cmd; /* 0: none */

ISR(USART_RX_vect) {
    uint8_t c = UDR0;
    if (c > ' ') pending_cmd = c; /* ignore CR, LF and spaces from terminals */
}

static void put_byte(uint8_t c) {
    while (!(UCSR0A & (1 << UDRE0))) {
    }
    UDR0 = c;
}

static void put_str_P(const char *s) {
    uint8_t c;
    while ((c = pgm_read_byte(s++))) put_byte(c);
}

static void put_eol(void) {
    put_byte('\r');
    put_byte('\n');
}

/* ------------------------------------------------------------ text */

/* A line is first formatted into this buffer, so that it can be cut. */
static char line[64];
static uint8_t line_len;

static void add_char(char c) {
    if (line_len < sizeof line - 1) line[line_len++] = c;
}

static void add_str(const char *s) {
    while (*s) add_char(*s++);
}

static void add_uint(uint32_t v) {
    char digits[10];
    uint8_t n = 0;
    do {
        digits[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n) add_char(digits[--n]);
}

/* A non-negative fixed-point number: add_fixed(2153, 100) gives "21.53". */
static void add_fixed(uint32_t v, uint16_t scale) {
    add_uint(v / scale);
    add_char('.');
    for (uint16_t d = scale / 10; d; d /= 10) add_char((char)('0' + (v / d) % 10));
}

static void put_line(uint8_t keep) {
    for (uint8_t i = 0; i < line_len && i < keep; i++) put_byte((uint8_t)line[i]);
}

static void send_line(uint8_t keep) {
    put_line(keep);
    put_eol();
    line_len = 0;
}

/* ------------------------------------------------------------ readings */

static uint32_t lcg_next(uint32_t *state) {
    *state = *state * 1664525UL + 1013904223UL;
    return *state >> 16; /* the low bits of an LCG are poor */
}

static int16_t walk(int16_t v, uint16_t r, int16_t span, int16_t lo, int16_t hi) {
    v = (int16_t)(v + (int16_t)(r % (uint16_t)(2 * span + 1)) - span);
    return v < lo ? lo : (v > hi ? hi : v);
}

static uint32_t rng, bad_rng, seq;
static int16_t temp_c100, hum_x10, pres_x10, vib_x100, batt_x10;
static uint8_t bad_kind;
static uint8_t fragment_len; /* > 0: the next reading goes out after its first fragment_len bytes */

static void restart(void) {
    rng = SEED;
    bad_rng = BAD_SEED;
    seq = 0;
    bad_kind = 0;
    fragment_len = 0;
    temp_c100 = 2150;
    hum_x10 = 480;
    pres_x10 = 10130;
    vib_x100 = 0;
    batt_x10 = 1000;
}

static void advance(void) {
    temp_c100 = walk(temp_c100, (uint16_t)lcg_next(&rng), 15, 500, 4500);
    hum_x10 = walk(hum_x10, (uint16_t)lcg_next(&rng), 5, 100, 950);
    pres_x10 = walk(pres_x10, (uint16_t)lcg_next(&rng), 3, 9500, 10500);
    vib_x100 = (int16_t)(lcg_next(&rng) % 60);
    if ((lcg_next(&rng) & 63) == 0 && batt_x10 > 0) batt_x10--;
}

/* The current values with the coming seq, up to `fields` values after the id;
 * `nan_temp` prints the temperature as "nan". */
static void format_reading(uint8_t fields, uint8_t nan_temp) {
    add_str(SENSOR_ID);
    add_char(',');
    add_uint(seq);
    if (fields < 2) return;
    add_char(',');
    if (nan_temp) add_str("nan");
    else add_fixed((uint32_t)temp_c100, 100);
    if (fields < 3) return;
    add_char(',');
    add_fixed((uint32_t)hum_x10, 10);
    if (fields < 4) return;
    add_char(',');
    add_fixed((uint32_t)pres_x10, 10);
    if (fields < 5) return;
    add_char(',');
    add_fixed((uint32_t)vib_x100, 100);
    if (fields < 6) return;
    add_char(',');
    add_fixed((uint32_t)batt_x10, 10);
}

static void send_malformed(void) {
    uint8_t kind = bad_kind;
    bad_kind = (uint8_t)((bad_kind + 1) % N_KINDS);
    switch (kind) {
    case 0: /* truncated */
        format_reading(6, 0);
        send_line((uint8_t)(1 + lcg_next(&bad_rng) % 24));
        break;
    case 1: { /* garbage */
        uint8_t n = (uint8_t)(3 + lcg_next(&bad_rng) % 10);
        add_char((char)0xFF);
        add_char((char)0x00);
        while (n--) {
            uint8_t b = (uint8_t)lcg_next(&bad_rng);
            add_char((char)(b == '\r' || b == '\n' ? 0xFE : b));
        }
        send_line(0xFF);
        break;
    }
    case 2: /* missing fields */
        format_reading(4, 0);
        send_line(0xFF);
        break;
    case 3: /* non-finite */
        format_reading(6, 1);
        send_line(0xFF);
        break;
    case 4: /* empty */
        send_line(0xFF);
        break;
    case 5: /* extra field */
        format_reading(6, 0);
        add_str(",7");
        send_line(0xFF);
        break;
    default: /* fragment: send_reading prints it, as the coming reading's values are not drawn yet */
        fragment_len = (uint8_t)(1 + lcg_next(&bad_rng) % FRAGMENT_MAX);
        break;
    }
}

static void send_reading(void) {
    advance();
    format_reading(6, 0);
    if (fragment_len) {
        put_line(fragment_len); /* no EOL: the reading follows on the same line */
        fragment_len = 0;
    }
    send_line(0xFF);
    seq++;
}

/* ------------------------------------------------------------ main */

static uint8_t paused;

static void send_info(void) {
    put_str_P(PSTR("# iot-platform emulated board fw 1 id=" SENSOR_ID " seq="));
    add_uint(seq);
    add_str(paused ? " paused" : " running");
    send_line(0xFF);
}

static void handle(uint8_t c) {
    switch (c) {
    case 'r': restart(); break;
    case 'p': paused = 1; break;
    case 'g': paused = 0; break;
    case '?': send_info(); return;
    default:
        put_str_P(PSTR("# unknown command"));
        put_eol();
        return;
    }
    put_str_P(PSTR("# ok "));
    put_byte(c);
    put_eol();
}

/* Wait until `due` (clock_us) or until a command arrives. */
static void wait_until(uint32_t due) {
    while ((int32_t)(due - clock_us()) > 0 && !pending_cmd) {
    }
}

int main(void) {
    UBRR0H = UBRRH_VALUE;
    UBRR0L = UBRRL_VALUE;
#if USE_2X
    UCSR0A |= (1 << U2X0);
#endif
    UCSR0B = (1 << TXEN0) | (1 << RXEN0) | (1 << RXCIE0);
    UCSR0C = (1 << UCSZ01) | (1 << UCSZ00); /* 8N1 */
    TCCR1A = 0;
    TCCR1B = (1 << CS12) | (1 << CS10); /* normal mode, clk/1024 */
    TIMSK1 = 0;
    restart();
    sei();

    send_info();
    uint32_t due = clock_us();
    for (;;) {
        uint8_t c;
        ATOMIC_BLOCK(ATOMIC_RESTORESTATE) {
            c = pending_cmd;
            pending_cmd = 0;
        }
        if (c) {
            handle(c);
            due = clock_us();
            continue;
        }
        if (paused) {
            wait_until(clock_us() + 1000000UL);
            continue;
        }
        if (BAD_EVERY > 0 && seq > 0 && seq % BAD_EVERY == 0) send_malformed();
        send_reading();
        due += PERIOD_MS * 1000UL; /* fixed rate: no drift */
        if ((int32_t)(due - clock_us()) < 0) due = clock_us(); /* fell behind */
        wait_until(due);
    }
}
