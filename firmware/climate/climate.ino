/*
  LabHub climate sketch: a TMP36 on A0, an LDR on A1 and a soil probe on A2.

  Prints one Arduino Serial Plotter line every 100 ms at 115200 baud:

      temp:24.78,light:511,soil:36

  - temp:  TMP36 in degrees Celsius (an LM35 would be mV / 10, without the 500 mV offset)
  - light: the LDR voltage divider as raw ADC counts, 0..1023 (brighter = higher)
  - soil:  a resistive soil probe as 0..100 % (wetter = higher voltage)

  Wiring (Arduino Uno, 5 V):
      TMP36: left pin 5V, middle pin A0, right pin GND
      LDR:   5V - LDR - A1 - 10 kOhm - GND
      soil:  probe VCC to 5V, GND to GND, analog out to A2

  The first line after a reset is a banner that starts with '#'. The Arduino IDE's
  plotter ignores it; LabHub's reader drops the first line it sees after opening the
  port (and an Uno resets when the port is opened), so the banner normally never reaches
  the hub. If the board resets while the hub is already reading, the banner arrives as a
  line that is not a plotter line and lands in the hub's dead letters: one line per reset.
*/

const unsigned long INTERVAL_MS = 100;  // 10 lines a second: fast enough for the tests
const float VREF_MV = 5000.0;           // analogReference(DEFAULT) is the 5 V supply

unsigned long lastPrint = 0;

// Millivolts on an analog pin, as in the Arduino "ReadAnalogVoltage" example.
float readMillivolts(int pin) {
  int raw = analogRead(pin);
  return raw * (VREF_MV / 1023.0);
}

void setup() {
  Serial.begin(115200);
  Serial.println(F("# LabHub climate sketch v1"));
  lastPrint = millis();
}

void loop() {
  // millis() keeps the rhythm: the time spent printing does not add up to drift.
  if (millis() - lastPrint < INTERVAL_MS) {
    return;
  }
  lastPrint += INTERVAL_MS;

  float tempC = (readMillivolts(A0) - 500.0) / 10.0;  // TMP36: 10 mV per degC, 500 mV at 0 degC
  int light = analogRead(A1);
  int soil = map(analogRead(A2), 0, 1023, 0, 100);

  Serial.print(F("temp:"));
  Serial.print(tempC, 2);
  Serial.print(F(",light:"));
  Serial.print(light);
  Serial.print(F(",soil:"));
  Serial.println(soil);
}
