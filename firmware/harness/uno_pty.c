/*
 * uno_pty: an Arduino Uno running a real sketch in simavr, with its serial port on a
 * pseudo-terminal, so that LabHub reads it exactly as it reads a board on /dev/ttyACM0.
 *
 *   uno_pty [--adc N=MV]... [--link PATH] [--reset-on-open] [--fast] [--ignore-stdin] SKETCH.elf
 *
 * stdout carries exactly one line, "pty: /dev/pts/N", once the port exists (everything
 * simavr prints goes to stderr). stdin takes commands, one a line, applied between two
 * instructions of the simulation:
 *
 *   adc N MV    set analog input AN (0..5) to MV millivolts (0..5000)
 *   reset       press the reset button
 *
 * SIGTERM, SIGINT or the end of stdin stop the board; the exit status is 0 then.
 *
 * --link PATH      keep PATH a symlink to the pty, as udev keeps /dev/ttyACM0 (a new run
 *                  re-points it: unplug and replug the board by restarting this program)
 * --reset-on-open  reset the board whenever the pty is opened, as an Uno's DTR line does
 * --fast           run as fast as simavr can (3-6x a real board) instead of in real time
 * --ignore-stdin   read no commands (run with stdin at /dev/null)
 *
 * Traps of simavr 1.6 handled here (see /work/shared/simavr-notes.md):
 * - uart_pty always makes /tmp/simavr-uart0, so parallel runs fight over it: we remove it
 *   when it is ours and offer --link instead.
 * - uart_pty's AVR-to-pty FIFO holds 511 bytes and drops the rest silently: the
 *   simulation waits while that FIFO is more than half full.
 * - uart_pty_stop() can hang (and signals its thread with SIGINT): we cancel and join the
 *   thread ourselves.
 * - simavr does not run in real time: we run 1 ms of cycles, then sleep until it is due.
 *   The UART's poll-sleep flag (a usleep per idle poll) is cleared, and simavr's own sleep
 *   callback is replaced, because this loop keeps the time.
 * - INT0/INT1 in their reset-default low-level mode pile up polling timers: strict level
 *   triggering is turned off after every reset.
 * - raising ADC IRQs is only safe on the thread that runs avr_run(): commands from stdin
 *   are read and applied by that same loop.
 * - a pty carries bytes at any baud rate: the speed the reader set is compared with the
 *   sketch's UART registers and a mismatch is reported on stderr.
 * - a pty has no DTR line: --reset-on-open watches the pty's open events with inotify.
 * - uart_pty prints on stdout: stdout is pointed at stderr, our one line has its own copy.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "avr_adc.h"
#include "avr_extint.h"
#include "avr_uart.h"
#include "sim_avr.h"
#include "sim_elf.h"
#include "sim_io.h"
#include "uart_pty.h"

#define UNO_MCU "atmega328p"
#define UNO_HZ 16000000u       /* the Uno's crystal */
#define UNO_SUPPLY_MV 5000     /* USB supply; analogReference(DEFAULT) is this */
#define UNO_ADC_PINS 6         /* A0..A5 on the Uno's header */
#define SLICE_US 1000          /* simulated time run between two looks at the wall clock */
#define MAX_LAG_US 50000       /* further behind than this: forget the debt, do not race */
#define FIFO_HIGH 256          /* of uart_pty's 511-byte FIFO: above this, the AVR waits */
#define FIFO_WAIT_US 200       /* uart_pty's thread drains the FIFO every <= 500 us */
#define BAUD_CHECK_US 100000   /* how often the port's speed is compared with the sketch's */
#define BAUD_SLACK_PCT 5       /* UARTs cope with a few % (Arduino's 115200 is 117647) */
#define SIMAVR_LINK "/tmp/simavr-uart0"

/* ATmega328P USART0 registers, as data-space addresses (datasheet, register summary). */
#define UCSR0A 0xC0
#define UCSR0B 0xC1
#define UBRR0L 0xC4
#define UBRR0H 0xC5
#define U2X0 1
#define TXEN0 3

static volatile sig_atomic_t stop_signal;

static void on_signal(int sig) { stop_signal = sig; }

struct board {
	avr_t *avr;
	uart_pty_t uart;
	int adc_mv[UNO_ADC_PINS];
	int adc_set[UNO_ADC_PINS];
	int reset_on_open;
	int inotify_fd;         /* the pty's open events */
	int port_opened;        /* someone opened the pty at least once */
	unsigned host_baud, sketch_baud;  /* last reported */
	unsigned long fifo_waits;  /* times the AVR waited for uart_pty's FIFO to drain */
	int stdin_fd;           /* -1 once stdin is ignored */
	int stdin_eof;
	char line[256];
	size_t line_len;
	const char *link;
	uint64_t t0_us;         /* wall clock at cycle c0 */
	avr_cycle_count_t c0;
};

static uint64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void rebase_clock(struct board *b)
{
	b->t0_us = now_us();
	b->c0 = b->avr->cycle;
}

/* This loop keeps the time; simavr's raw sleep callback would usleep on its own. */
static void no_sleep(avr_t *avr, avr_cycle_count_t how_long)
{
	(void)avr;
	(void)how_long;
}

static void apply_adc(struct board *b, int pin)
{
	avr_irq_t *irq = avr_io_getirq(b->avr, AVR_IOCTL_ADC_GETIRQ, ADC_IRQ_ADC0 + pin);
	if (irq)
		avr_raise_irq(irq, (uint32_t)b->adc_mv[pin]);
}

/* What must hold after avr_init() and after every reset. */
static void settle(struct board *b)
{
	avr_extint_set_strict_lvl_trig(b->avr, 0, 0);
	avr_extint_set_strict_lvl_trig(b->avr, 1, 0);
	uint32_t flags = 0;
	avr_ioctl(b->avr, AVR_IOCTL_UART_GET_FLAGS('0'), &flags);
	flags &= ~(uint32_t)(AVR_UART_FLAG_POLL_SLEEP | AVR_UART_FLAG_STDIO);
	avr_ioctl(b->avr, AVR_IOCTL_UART_SET_FLAGS('0'), &flags);
	for (int pin = 0; pin < UNO_ADC_PINS; pin++)
		if (b->adc_set[pin])
			apply_adc(b, pin);
}

static void reset_board(struct board *b, const char *why)
{
	fprintf(stderr, "uno_pty: reset (%s)\n", why);
	avr_reset(b->avr);
	settle(b);
	rebase_clock(b);
}

static int parse_adc(struct board *b, const char *pin_text, const char *mv_text)
{
	char *end;
	long pin = strtol(pin_text, &end, 10);
	if (end == pin_text || *end || pin < 0 || pin >= UNO_ADC_PINS)
		return -1;
	long mv = strtol(mv_text, &end, 10);
	if (end == mv_text || *end || mv < 0 || mv > UNO_SUPPLY_MV)
		return -1;
	b->adc_mv[pin] = (int)mv;
	b->adc_set[pin] = 1;
	return (int)pin;
}

static void run_command(struct board *b, char *line)
{
	char *save = NULL;
	char *word = strtok_r(line, " \t\r", &save);
	if (!word)
		return;
	if (strcmp(word, "adc") == 0) {
		char *pin = strtok_r(NULL, " \t\r", &save);
		char *mv = strtok_r(NULL, " \t\r", &save);
		int n = (pin && mv && !strtok_r(NULL, " \t\r", &save)) ? parse_adc(b, pin, mv) : -1;
		if (n < 0)
			fprintf(stderr, "uno_pty: usage: adc PIN(0..%d) MILLIVOLTS(0..%d)\n",
			        UNO_ADC_PINS - 1, UNO_SUPPLY_MV);
		else
			apply_adc(b, n);
	} else if (strcmp(word, "reset") == 0) {
		reset_board(b, "command");
	} else {
		fprintf(stderr, "uno_pty: unknown command %s (adc PIN MV, reset)\n", word);
	}
}

static void read_stdin(struct board *b)
{
	char buf[512];
	ssize_t n = read(b->stdin_fd, buf, sizeof buf);
	if (n < 0) {
		if (errno != EINTR && errno != EAGAIN)
			b->stdin_eof = 1;
		return;
	}
	if (n == 0) {
		b->stdin_eof = 1;
		return;
	}
	for (ssize_t i = 0; i < n; i++) {
		if (buf[i] == '\n') {
			b->line[b->line_len] = '\0';
			run_command(b, b->line);
			b->line_len = 0;
		} else if (b->line_len < sizeof b->line - 1) {
			b->line[b->line_len++] = buf[i];
		}
	}
}

static void read_inotify(struct board *b)
{
	char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
	int opened = 0;
	ssize_t n;
	while ((n = read(b->inotify_fd, buf, sizeof buf)) > 0) {
		for (char *p = buf; p < buf + n;) {
			struct inotify_event *ev = (struct inotify_event *)p;
			if (ev->mask & IN_OPEN)
				opened = 1;
			p += sizeof *ev + ev->len;
		}
	}
	if (opened)
		b->port_opened = 1;
	if (opened && b->reset_on_open)
		reset_board(b, "port opened");
}

/* Wait up to timeout_us for stdin or the pty's open events, and handle what arrived. */
static void wait_inputs(struct board *b, uint64_t timeout_us)
{
	struct pollfd fds[2];
	nfds_t count = 0;
	if (b->stdin_fd >= 0 && !b->stdin_eof)
		fds[count++] = (struct pollfd){ .fd = b->stdin_fd, .events = POLLIN };
	if (b->inotify_fd >= 0)
		fds[count++] = (struct pollfd){ .fd = b->inotify_fd, .events = POLLIN };
	struct timespec ts = { .tv_sec = (time_t)(timeout_us / 1000000u),
	                       .tv_nsec = (long)(timeout_us % 1000000u) * 1000 };
	if (ppoll(fds, count, &ts, NULL) <= 0)
		return;
	for (nfds_t i = 0; i < count; i++) {
		if (!fds[i].revents)
			continue;
		if (fds[i].fd == b->stdin_fd)
			read_stdin(b);
		else
			read_inotify(b);
	}
}

/* Bytes waiting in uart_pty's AVR-to-pty FIFO; its thread moves the read cursor. */
static unsigned fifo_level(struct board *b)
{
	const volatile uart_pty_fifo_t *fifo = &b->uart.pty.in;
	unsigned write = fifo->write, read = fifo->read;
	return (write + uart_pty_fifo_fifo_size - read) & (uart_pty_fifo_fifo_size - 1);
}

static unsigned speed_baud(speed_t speed)
{
	static const struct { speed_t code; unsigned baud; } table[] = {
		{ B300, 300 }, { B1200, 1200 }, { B2400, 2400 }, { B4800, 4800 },
		{ B9600, 9600 }, { B19200, 19200 }, { B38400, 38400 }, { B57600, 57600 },
		{ B115200, 115200 }, { B230400, 230400 }, { B460800, 460800 },
		{ B500000, 500000 }, { B921600, 921600 }, { B1000000, 1000000 },
		{ B2000000, 2000000 },
	};
	for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
		if (table[i].code == speed)
			return table[i].baud;
	return 0;
}

/*
 * A pty carries bytes at any speed, so a sketch at 115200 read at 9600 works here and
 * prints garbage on a real board. Say so on stderr: compare the speed the reader set on
 * the pty (TCGETS on the master end reports the slave's settings) with the sketch's UART.
 */
static void check_baud(struct board *b)
{
	struct termios tio;
	const uint8_t *reg = b->avr->data;
	if (!b->port_opened || !(reg[UCSR0B] & (1 << TXEN0)) || tcgetattr(b->uart.pty.s, &tio) != 0)
		return;
	unsigned host = speed_baud(cfgetospeed(&tio));
	unsigned ubrr = ((unsigned)(reg[UBRR0H] & 0x0f) << 8) | reg[UBRR0L];
	unsigned sketch = UNO_HZ / (((reg[UCSR0A] & (1 << U2X0)) ? 8u : 16u) * (ubrr + 1));
	if (host == b->host_baud && sketch == b->sketch_baud)
		return;
	b->host_baud = host;
	b->sketch_baud = sketch;
	unsigned diff = host > sketch ? host - sketch : sketch - host;
	int mismatch = (unsigned long)diff * 100 > (unsigned long)host * BAUD_SLACK_PCT;
	fprintf(stderr, "uno_pty: the port is read at %u baud, the sketch sends at %u baud%s\n",
	        host, sketch, mismatch ? ": MISMATCH, a real board would print garbage" : "");
}

/* uart_pty's own link is shared by every simavr on the machine: remove it if it is ours. */
static void forget_simavr_link(const char *pty)
{
	char target[PATH_MAX];
	ssize_t n = readlink(SIMAVR_LINK, target, sizeof target - 1);
	if (n < 0)
		return;
	target[n] = '\0';
	if (strcmp(target, pty) == 0)
		unlink(SIMAVR_LINK);
}

static int make_link(const char *link, const char *pty)
{
	char tmp[PATH_MAX];
	if (snprintf(tmp, sizeof tmp, "%s.%ld.tmp", link, (long)getpid()) >= (int)sizeof tmp)
		return -1;
	unlink(tmp);
	if (symlink(pty, tmp) != 0)
		return -1;
	if (rename(tmp, link) != 0) {  /* atomic: a reader never sees the link missing */
		unlink(tmp);
		return -1;
	}
	return 0;
}

static void drop_link(const char *link, const char *pty)
{
	char target[PATH_MAX];
	ssize_t n = readlink(link, target, sizeof target - 1);
	if (n < 0)
		return;
	target[n] = '\0';
	if (strcmp(target, pty) == 0)  /* a newer run may own it by now */
		unlink(link);
}

static void usage(const char *argv0)
{
	fprintf(stderr, "usage: %s [--adc N=MV]... [--link PATH] [--reset-on-open] [--fast] "
	                "[--ignore-stdin] SKETCH.elf\n", argv0);
}

int main(int argc, char **argv)
{
	static struct board board;
	struct board *b = &board;
	const char *elf = NULL;
	int fast = 0;
	b->stdin_fd = STDIN_FILENO;
	b->inotify_fd = -1;

	for (int i = 1; i < argc; i++) {
		const char *arg = argv[i];
		if (strcmp(arg, "--adc") == 0 && i + 1 < argc) {
			char spec[64];
			snprintf(spec, sizeof spec, "%s", argv[++i]);
			char *eq = strchr(spec, '=');
			if (!eq || (*eq = '\0', parse_adc(b, spec, eq + 1) < 0)) {
				fprintf(stderr, "uno_pty: --adc wants PIN=MILLIVOLTS, e.g. 0=750\n");
				return 2;
			}
		} else if (strcmp(arg, "--link") == 0 && i + 1 < argc) {
			b->link = argv[++i];
		} else if (strcmp(arg, "--reset-on-open") == 0) {
			b->reset_on_open = 1;
		} else if (strcmp(arg, "--fast") == 0) {
			fast = 1;
		} else if (strcmp(arg, "--ignore-stdin") == 0) {
			b->stdin_fd = -1;
		} else if (arg[0] != '-' && !elf) {
			elf = arg;
		} else {
			usage(argv[0]);
			return 2;
		}
	}
	if (!elf) {
		usage(argv[0]);
		return 2;
	}

	/* Our protocol keeps the real stdout; simavr's printf chatter goes to stderr. */
	int proto_fd = dup(STDOUT_FILENO);
	FILE *proto = proto_fd >= 0 ? fdopen(proto_fd, "w") : NULL;
	if (!proto || dup2(STDERR_FILENO, STDOUT_FILENO) < 0) {
		perror("uno_pty: stdout");
		return 1;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);

	elf_firmware_t fw;
	memset(&fw, 0, sizeof fw);
	if (elf_read_firmware(elf, &fw) != 0) {
		fprintf(stderr, "uno_pty: cannot read %s\n", elf);
		return 1;
	}
	b->avr = avr_make_mcu_by_name(UNO_MCU);
	if (!b->avr) {
		fprintf(stderr, "uno_pty: simavr has no %s\n", UNO_MCU);
		return 1;
	}
	avr_init(b->avr);
	avr_load_firmware(b->avr, &fw);
	b->avr->frequency = UNO_HZ;
	b->avr->vcc = b->avr->avcc = b->avr->aref = UNO_SUPPLY_MV;
	b->avr->sleep = no_sleep;

	/* Signals go to this thread only: a signal landing in uart_pty's thread ends its
	 * select() loop for good. The thread inherits the mask it is created with. */
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;  /* no SA_RESTART: ppoll() returns at once */
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	sigset_t mask, old;
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &mask, &old);
	uart_pty_init(b->avr, &b->uart);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (!b->uart.pty.s) {
		fprintf(stderr, "uno_pty: no pseudo-terminal\n");
		return 1;
	}
	uart_pty_connect(&b->uart, '0');
	const char *pty = b->uart.pty.slavename;
	forget_simavr_link(pty);
	settle(b);

	if (b->link && make_link(b->link, pty) != 0) {
		fprintf(stderr, "uno_pty: cannot link %s to %s: %s\n", b->link, pty, strerror(errno));
		return 1;
	}
	b->inotify_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (b->inotify_fd < 0 || inotify_add_watch(b->inotify_fd, pty, IN_OPEN) < 0) {
		fprintf(stderr, "uno_pty: cannot watch %s: %s\n", pty, strerror(errno));
		return 1;
	}
	/* stdin stays blocking (it may be the terminal of the shell that started us): it is
	 * only read after ppoll() said it has bytes. */

	fprintf(proto, "pty: %s\n", pty);
	fflush(proto);
	fprintf(stderr, "uno_pty: %s on %s%s%s, %s\n", elf, pty, b->link ? " via " : "",
	        b->link ? b->link : "", fast ? "as fast as possible" : "in real time");

	const avr_cycle_count_t slice = (avr_cycle_count_t)UNO_HZ / 1000000u * SLICE_US;
	int status = 0;
	uint64_t baud_checked = 0;
	rebase_clock(b);
	while (!stop_signal && !b->stdin_eof) {
		wait_inputs(b, 0);
		if (now_us() - baud_checked >= BAUD_CHECK_US) {
			check_baud(b);
			baud_checked = now_us();
		}
		if (fifo_level(b) > FIFO_HIGH) {
			b->fifo_waits++;
			wait_inputs(b, FIFO_WAIT_US);
			continue;
		}
		avr_cycle_count_t end = b->avr->cycle + slice;
		while (b->avr->cycle < end && fifo_level(b) <= FIFO_HIGH) {
			int state = avr_run(b->avr);
			if (state == cpu_Done || state == cpu_Crashed) {
				fprintf(stderr, "uno_pty: the AVR %s\n",
				        state == cpu_Done ? "stopped" : "crashed");
				status = state == cpu_Done ? 0 : 3;
				goto out;
			}
		}
		if (fast)
			continue;
		uint64_t due = b->t0_us + (uint64_t)(b->avr->cycle - b->c0) * 1000000u / UNO_HZ;
		uint64_t now = now_us();
		if (due > now)
			wait_inputs(b, due - now);
		else if (now - due > MAX_LAG_US)
			rebase_clock(b);
	}
	if (stop_signal)
		fprintf(stderr, "uno_pty: stopped by signal %d\n", (int)stop_signal);
	else
		fprintf(stderr, "uno_pty: stdin closed, stopping\n");
out:
	fprintf(stderr, "uno_pty: %.1f s simulated; waited %lu times for the pty to take bytes\n",
	        (double)b->avr->cycle / UNO_HZ, b->fifo_waits);
	/* Not uart_pty_stop(): it can hang in its join. select() and write() in that thread
	 * are cancellation points; then the pty goes away with its master end. */
	pthread_cancel(b->uart.thread);
	pthread_join(b->uart.thread, NULL);
	close(b->uart.pty.s);
	if (b->link)
		drop_link(b->link, pty);
	if (b->inotify_fd >= 0)
		close(b->inotify_fd);
	avr_terminate(b->avr);
	fclose(proto);
	return status;
}
