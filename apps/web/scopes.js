// SMART scopes in the words a patient reads: what a partner holding each may read.

export const SCOPES = {
  "patient/Consultation.rs": {
    short: "consultations",
    long: "Your consultations: when they took place, with which clinician, and their summaries",
  },
  "patient/Recording.rs": {
    short: "recordings",
    long: "The video and audio recordings of your consultations",
  },
  "patient/Patient.rs": {
    short: "your profile",
    long: "Your profile: your name and date of birth",
  },
};

export function shortWords(scope) {
  return SCOPES[scope] ? SCOPES[scope].short : scope;
}

export function longWords(scope) {
  return SCOPES[scope] ? SCOPES[scope].long : scope;
}
