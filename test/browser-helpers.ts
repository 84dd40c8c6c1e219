/** Browser setup shared by the tests that open a self-contained HTML page in Chromium. */
import type { Page } from 'playwright-core';
import { type Browser, launchChromium, openPage } from '../widget/page/harness';

export interface TrackedPage {
  browser: Browser;
  page: Page;
  /** URL of every request the browser made. */
  requests: string[];
  /** Uncaught page errors, and console errors when asked for. */
  errors: string[];
}

/** Launches Chromium and opens its page, recording requests and errors; close it with browser.close(). */
export async function openTrackedPage(o: { viewport?: { width: number; height: number }; consoleErrors?: boolean } = {}): Promise<TrackedPage> {
  const browser = await launchChromium(o.viewport);
  try {
    const requests: string[] = [];
    const errors: string[] = [];
    browser.context.on('request', (r) => requests.push(r.url()));
    const page = await openPage(browser, errors);
    if (o.consoleErrors) page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
    return { browser, page, requests, errors };
  } catch (err) {
    await browser.close();
    throw err;
  }
}
