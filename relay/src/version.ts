// The release this code is, as the image tags and the chart's appVersion carry it (a test
// holds it equal to package.json and Chart.yaml).
export const VERSION = '0.1.0';
