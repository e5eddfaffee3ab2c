// Back office pages without live parts: show times in the venue's zone, in the reader's words.
import { localizeDates } from "app/common";

localizeDates();
